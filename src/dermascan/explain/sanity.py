"""Checks that heat maps mean something, measured on images with lesion masks (the synthetic set has them).

Two checks, both from the saliency-evaluation literature:

* **Localisation** (pointing-game style): the share of the heat map's energy inside the lesion mask,
  :func:`energy_in_mask`, against what a uniform map would get, the mask's area fraction
  (:func:`uniform_share`), and what a centred Gaussian gets (:func:`centre_prior`; lesions sit in the middle
  of dermoscopic photos). A map that looks at the lesion scores well above both.
* **Model randomisation** (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"): a map that barely
  changes when the weights are re-initialised explains the image, not the model (an edge detector would
  pass the localisation check). :func:`rank_correlation` (Spearman) between the trained model's map and the
  map of a copy with re-initialised weights (:func:`randomize_model`) must be well below 1.

:func:`sanity_report` runs both over a set of images for the report.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import stats
from torch import Tensor, nn

from dermascan.config import Preprocessing
from dermascan.data.transforms import eval_transform
from dermascan.explain.render import heatmap_from_maps, resized_size
from dermascan.explain.run import compute_maps, resolve_method


def energy_in_mask(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heat map's energy (sum of its values) that falls inside the mask.

    Args:
        heat: ``(H, W)`` non-negative heat map.
        mask: ``(H, W)`` lesion mask (bool, or 0/1, or 0/255).

    Returns:
        A value in ``[0, 1]``; NaN with a warning for an all-zero map (it points nowhere).
    """
    heat = np.asarray(heat, dtype=np.float64)
    inside = np.asarray(mask) > 0
    if heat.shape != inside.shape:
        raise ValueError(f"heat {heat.shape} and mask {inside.shape} must have the same shape")
    if (heat < 0).any():
        raise ValueError("heat must be non-negative (ReLU and normalise it first)")
    total = heat.sum()
    if total <= 0:
        warnings.warn("energy_in_mask: the heat map is all zero; returning NaN", RuntimeWarning, stacklevel=2)
        return math.nan
    return float(heat[inside].sum() / total)


def uniform_share(mask: np.ndarray) -> float:
    """What :func:`energy_in_mask` gives for a uniform map: the mask's area fraction."""
    return float((np.asarray(mask) > 0).mean())


def centre_prior(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A centred isotropic Gaussian ``(height, width)``, ``sigma`` in units of the shorter side.

    A baseline harder than the uniform map: dermoscopic photos (and the synthetic set) centre the lesion, so
    a map that merely favours the middle already scores above the mask's area fraction.
    """
    yy, xx = np.mgrid[:height, :width]
    s = sigma * min(height, width)
    return np.exp(-(((yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2) / (2 * s * s)))


def rank_correlation(map_a: np.ndarray, map_b: np.ndarray) -> float:
    """Spearman rank correlation between two maps of the same shape (flattened).

    Returns:
        In ``[-1, 1]``; NaN with a warning when either map is constant (no ranking to compare).
    """
    a, b = np.asarray(map_a, dtype=np.float64).ravel(), np.asarray(map_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {np.shape(map_a)} and {np.shape(map_b)}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        warnings.warn("rank_correlation: a constant map has no ranking; returning NaN", RuntimeWarning, stacklevel=2)
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def randomize_model(model: nn.Module, seed: int = 0, modules: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` with re-initialised weights (the original is untouched).

    Every module with ``reset_parameters`` (convolutions, linear layers, norms, attention) is reset to its
    own initialisation; BatchNorm running statistics are reset with it. Parameters no module resets (ViT
    class token, position embedding, register tokens, layer-scale) are drawn from ``N(0, 0.02^2)``.

    Args:
        model: the trained model.
        seed: seeds the re-initialisation (the global RNG state is restored afterwards).
        modules: re-initialise only these dotted submodule names (Adebayo's cascading randomisation: pass
            ``["fc"]``, then ``["fc", "layer4"]``, ...); ``None`` re-initialises everything.

    Returns:
        The randomised copy, in the model's training mode.
    """
    clone = copy.deepcopy(model)
    roots = [clone] if modules is None else [clone.get_submodule(name) for name in modules]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for root in roots:
            reset: set[int] = set()
            for m in root.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                    reset.update(id(p) for p in m.parameters(recurse=False))
            for p in root.parameters():
                if id(p) not in reset:
                    p.normal_(0.0, 0.02)
    return clone


def prepare_pairs(
    images: Sequence[Image.Image], masks: Sequence[np.ndarray | Image.Image], preprocessing: Preprocessing
) -> tuple[Tensor, np.ndarray]:
    """Images and their lesion masks in the model's input geometry (same resize and centre crop).

    Args:
        images: RGB PIL images.
        masks: lesion masks of the same sizes (arrays or PIL, non-zero = lesion).
        preprocessing: the model's eval preprocessing.

    Returns:
        ``(x (N, 3, S, S) normalised, masks (N, S, S) bool)``.
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    tf = eval_transform(preprocessing)
    s, r = preprocessing.input_size, preprocessing.resize_size
    xs, ms = [], []
    for img, mask in zip(images, masks, strict=True):
        m = mask if isinstance(mask, Image.Image) else Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
        if m.size != img.size:
            raise ValueError(f"mask size {m.size} differs from image size {img.size}")
        xs.append(tf(img.convert("RGB")))
        # The image's geometry with nearest-neighbour resampling, so the mask stays binary.
        m = m.convert("L").resize(resized_size(m.size, r), Image.Resampling.NEAREST)
        left, top = round((m.size[0] - s) / 2.0), round((m.size[1] - s) / 2.0)
        ms.append(np.asarray(m.crop((left, top, left + s, top + s))) > 127)
    return torch.stack(xs), np.stack(ms)  # (N, 3, S, S), (N, S, S)


def _maps_for(
    model: nn.Module, x: Tensor, method: str, class_index: Tensor | None, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    maps, preds = [], []
    for i in range(0, len(x), batch_size):
        idx = None if class_index is None else class_index[i : i + batch_size]
        m, logits = compute_maps(model, x[i : i + batch_size], method, idx)
        maps.append(m.float().cpu().numpy())
        preds.append(logits.argmax(dim=1).cpu().numpy())
    return np.concatenate(maps), np.concatenate(preds)  # (N, h, w), (N,)


def sanity_report(
    model: nn.Module,
    images: Tensor,
    masks: np.ndarray,
    method: str = "auto",
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Localisation and model-randomisation figures of one explanation method over a set of images.

    Each map is rendered as the user sees it (ReLU, min-max, bilinear to the input size) before scoring. The
    randomised model explains the same class as the trained one (the trained model's prediction), so the
    comparison isolates the weights; attention maps are class-agnostic anyway.

    Args:
        model: the trained model.
        images: ``(N, 3, S, S)`` normalised inputs (see :func:`prepare_pairs`).
        masks: ``(N, S, S)`` lesion masks in the same geometry.
        method: ``auto`` | ``gradcam`` | ``attention`` | ``rollout``.
        seed: for :func:`randomize_model`.
        batch_size: images per forward pass.

    Returns:
        ``method``, ``n_images``, ``energy_in_mask`` (mean share of heat inside the lesion), ``uniform_share``
        (mean lesion area fraction: a uniform map's score), ``energy_ratio`` (their ratio; 1 = no better than
        uniform), ``share_above_uniform`` (fraction of images whose map beats its own uniform share),
        ``centre_prior_energy_in_mask`` (what a centred Gaussian, :func:`centre_prior`, gets: a map must beat it
        to show more than "lesions are in the middle"),
        ``randomized_energy_in_mask`` (the randomised model's mean), ``randomization_spearman`` (mean Spearman
        correlation trained vs randomised; near 1 would mean the map ignores the weights),
        ``randomization_spearman_std`` and ``flat_maps`` (all-zero maps, left out of the means).
    """
    masks = np.asarray(masks) > 0
    if images.ndim != 4 or masks.shape != (images.shape[0], images.shape[2], images.shape[3]):
        raise ValueError(
            f"images (N, 3, S, S) and masks (N, S, S) must match, got {tuple(images.shape)} and {masks.shape}"
        )
    method = resolve_method(model, method)
    device = next(model.parameters()).device
    x = images.to(device)
    trained, preds = _maps_for(model, x, method, None, batch_size)
    randomized, _ = _maps_for(randomize_model(model, seed=seed), x, method, torch.as_tensor(preds), batch_size)

    size = (images.shape[3], images.shape[2])  # (W, H)
    prior = centre_prior(images.shape[2], images.shape[3])  # (H, W)
    energy, uniform, centre, energy_random, spearman, flat = [], [], [], [], [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # flat maps are counted below instead
        for m_t, m_r, mask in zip(trained, randomized, masks, strict=True):
            heat_t = heatmap_from_maps(m_t[None], 0, size)  # (H, W)
            heat_r = heatmap_from_maps(m_r[None], 0, size)  # (H, W)
            e = energy_in_mask(heat_t, mask)
            if math.isnan(e):
                flat += 1
                continue
            energy.append(e)
            uniform.append(uniform_share(mask))
            centre.append(energy_in_mask(prior, mask))
            energy_random.append(energy_in_mask(heat_r, mask))
            spearman.append(rank_correlation(heat_t, heat_r))
    energy_a, uniform_a = np.asarray(energy), np.asarray(uniform)
    mean_uniform = float(uniform_a.mean()) if len(uniform_a) else math.nan
    return {
        "method": method,
        "n_images": len(images),
        "energy_in_mask": float(energy_a.mean()) if len(energy_a) else math.nan,
        "uniform_share": mean_uniform,
        "energy_ratio": float(energy_a.mean() / mean_uniform) if len(energy_a) and mean_uniform > 0 else math.nan,
        "share_above_uniform": float((energy_a > uniform_a).mean()) if len(energy_a) else math.nan,
        "centre_prior_energy_in_mask": float(np.mean(centre)) if centre else math.nan,
        "randomized_energy_in_mask": float(np.nanmean(energy_random)) if energy_random else math.nan,
        "randomization_spearman": float(np.nanmean(spearman)) if spearman else math.nan,
        "randomization_spearman_std": float(np.nanstd(spearman)) if spearman else math.nan,
        "flat_maps": flat,
    }


__all__ = [
    "centre_prior",
    "energy_in_mask",
    "prepare_pairs",
    "randomize_model",
    "rank_correlation",
    "sanity_report",
    "uniform_share",
]
