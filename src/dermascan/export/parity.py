"""Parity of an exported model with the eager PyTorch model it came from, on real images.

Both sides are :class:`~dermascan.inference.Predictor` objects fed the *same* preprocessed batches, so the
comparison isolates the export and the runtime. Compared: calibrated probabilities (max absolute
difference), the primary diagnosis (DermaScan's decision rule at the locked threshold) and the melanoma
flag, and, when both return them, the heat map a clinician would see: the map of the reference's primary
class (a ViT's one attention map), after the renderer's ReLU and min-max normalisation; per image the
largest absolute difference, reported as the maximum and the 95th percentile over the images; and the
penultimate features embedding drift reads (per image the relative L2 difference ``|f - f'| / |f|``).

Criteria (:func:`criteria`):

* ``fp32``: probabilities within 1e-4 of the eager model, and every displayed heat map within 1e-2 (a
  wiring check: min-max normalisation amplifies float noise on a nearly flat map).
* ``fp16`` / ``bf16`` / ``int8``: the primary diagnosis and the melanoma flag agree on at least 99.5% of the
  images (reduced precision moves probabilities by ~1e-3, int8 by ~1e-1; what must not move is the decision),
  and 95% of the displayed heat maps are within 0.1 of the eager ones. A maximum would let one nearly flat
  map fail the export; the percentile still catches a heat-map output that reduced precision broke.
* features, at every precision: the largest relative difference below 1e-3 (fp32), the 95th percentile below
  0.1 (reduced precision). The monitor compares served embeddings with a reference the eager model measured:
  a runtime that moved them would raise embedding drift on every window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dermascan.errors import DermaScanError
from dermascan.explain.render import normalize_map
from dermascan.inference.backends import Outputs
from dermascan.inference.predictor import ImageInput, Predictor

#: fp32: largest allowed absolute probability difference.
FP32_PROB_TOL = 1e-4
#: fp32: largest allowed absolute difference of a normalised heat map.
FP32_MAP_TOL = 1e-2
#: fp16/bf16/int8: smallest allowed agreement of the primary diagnosis and of the melanoma flag.
MIN_AGREEMENT = 0.995
#: fp16/bf16/int8: largest allowed 95th percentile of the displayed heat maps' differences.
REDUCED_MAP_P95_TOL = 0.1
#: fp32: largest allowed relative difference of the penultimate features.
FP32_FEATURE_TOL = 1e-3
#: fp16/bf16/int8: largest allowed 95th percentile of the features' relative differences.
REDUCED_FEATURE_P95_TOL = 0.1


class ExportParityError(DermaScanError, RuntimeError):
    """An exported model disagrees with the eager model beyond the criteria; ``reports`` holds the figures."""

    def __init__(self, message: str, reports: list[ParityReport]) -> None:
        super().__init__(message)
        self.reports = reports


@dataclass
class ParityReport:
    """Figures of one runtime against the eager model.

    Attributes:
        runtime: runtime of the exported model (``onnxruntime``, ``openvino``, ``torchscript`` ...).
        precision: precision the criterion is for (the bundle's, or fp32 when both are fp32).
        compute_precision: precision the runtime computed at (an fp16 ONNX graph on OpenVINO's CPU: fp32
            arithmetic on fp16-rounded weights).
        n_images: images compared.
        max_abs_prob_diff: largest absolute difference of a calibrated probability.
        primary_agreement: share of images with the same primary diagnosis.
        flag_agreement: share of images with the same melanoma flag.
        max_abs_map_diff: largest absolute difference of a displayed, normalised heat map (``None``: no maps).
        p95_abs_map_diff: 95th percentile over the images of that per-image difference (``None``: no maps).
        criterion: the rule applied.
        passed: whether the criterion holds.
        max_rel_feature_diff: largest relative difference of the penultimate features (``None``: no features).
        p95_rel_feature_diff: its 95th percentile over the images.
    """

    runtime: str
    precision: str
    compute_precision: str
    n_images: int
    max_abs_prob_diff: float
    primary_agreement: float
    flag_agreement: float
    max_abs_map_diff: float | None
    p95_abs_map_diff: float | None
    criterion: str
    passed: bool
    max_rel_feature_diff: float | None = None
    p95_rel_feature_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        maps = (
            ""
            if self.max_abs_map_diff is None
            else f", heat map diff max {self.max_abs_map_diff:.2e} / p95 {self.p95_abs_map_diff:.2e}"
        )
        if self.max_rel_feature_diff is not None:
            maps += f", features rel. diff max {self.max_rel_feature_diff:.2e} / p95 {self.p95_rel_feature_diff:.2e}"
        return (
            f"{self.runtime} ({self.precision} bundle, computing in {self.compute_precision}) on {self.n_images} "
            f"images: max |dp| {self.max_abs_prob_diff:.2e}, "
            f"primary agreement {self.primary_agreement:.2%}, flag agreement {self.flag_agreement:.2%}{maps} "
            f"-> {'pass' if self.passed else 'FAIL'} ({self.criterion})"
        )


def criteria(precision: str) -> str:
    """Human-readable rule for ``precision``."""
    if precision == "fp32":
        return (
            f"max |dp| < {FP32_PROB_TOL:g}, max |dmap| < {FP32_MAP_TOL:g} and max features rel. diff < "
            f"{FP32_FEATURE_TOL:g}"
        )
    return (
        f"primary and flag agreement >= {MIN_AGREEMENT:.1%}, p95 |dmap| <= {REDUCED_MAP_P95_TOL:g} and p95 features "
        f"rel. diff <= {REDUCED_FEATURE_P95_TOL:g}"
    )


def passes(
    precision: str,
    max_abs_prob_diff: float,
    primary_agreement: float,
    flag_agreement: float,
    max_abs_map_diff: float | None = None,
    p95_abs_map_diff: float | None = None,
    max_rel_feature_diff: float | None = None,
    p95_rel_feature_diff: float | None = None,
) -> bool:
    """Whether the figures meet the criterion for ``precision`` (map or feature figures ``None``: none)."""
    if precision == "fp32":
        maps_ok = max_abs_map_diff is None or max_abs_map_diff < FP32_MAP_TOL
        feats_ok = max_rel_feature_diff is None or max_rel_feature_diff < FP32_FEATURE_TOL
        return math.isfinite(max_abs_prob_diff) and max_abs_prob_diff < FP32_PROB_TOL and maps_ok and feats_ok
    maps_ok = p95_abs_map_diff is None or p95_abs_map_diff <= REDUCED_MAP_P95_TOL
    feats_ok = p95_rel_feature_diff is None or p95_rel_feature_diff <= REDUCED_FEATURE_P95_TOL
    return primary_agreement >= MIN_AGREEMENT and flag_agreement >= MIN_AGREEMENT and maps_ok and feats_ok


def compare(
    reference: Predictor,
    candidate: Predictor,
    batches: Sequence[np.ndarray],
    precision: str | None = None,
    reference_outputs: Sequence[Outputs] | None = None,
    progress: bool = False,
) -> ParityReport:
    """Run both predictors on the same preprocessed batches and compare their outputs.

    Args:
        reference: the eager fp32 model.
        candidate: the exported model on its runtime.
        batches: float32 arrays (B, 3, S, S).
        precision: the exported precision, whose criterion applies (default: the candidate's compute
            precision). A reduced-precision bundle keeps its looser criterion on a runtime that computes in
            fp32, because its weights may be rounded.
        reference_outputs: ``reference.infer(batch)`` for each batch, when already computed (several
            candidates are compared with one reference).
        progress: show a progress bar over the batches on stderr.

    Raises:
        ValueError: no images.
    """
    precision = precision or candidate.backend.precision
    n = sum(len(b) for b in batches)
    if n == 0:
        raise ValueError("parity needs at least one image")
    dp, same_primary, same_flag = 0.0, 0, 0
    map_diffs: list[float] = []  # per image
    feature_diffs: list[float] = []  # per image
    from tqdm import tqdm

    bar = tqdm(batches, desc=f"parity {candidate.runtime}", unit="batch", disable=not progress, leave=False)
    for i, x in enumerate(bar):
        ref_logits, ref_maps, ref_feats = reference_outputs[i] if reference_outputs is not None else reference.infer(x)
        cand_logits, cand_maps, cand_feats = candidate.infer(x)
        p_ref, p_cand = reference.probabilities(ref_logits), candidate.probabilities(cand_logits)  # (B, K)
        dp = max(dp, float(np.abs(p_ref - p_cand).max()) if np.isfinite(p_cand).all() else math.inf)
        k_ref, f_ref = reference.decide(p_ref)
        k_cand, f_cand = candidate.decide(p_cand)
        same_primary += int((k_ref == k_cand).sum())
        same_flag += int((f_ref == f_cand).sum())
        if ref_maps is not None and cand_maps is not None:
            # Compare what a clinician sees: the primary class's map after the renderer's ReLU + min-max
            # normalisation (M == 1: a ViT's class-agnostic attention map).
            shown = k_ref if ref_maps.shape[1] > 1 else np.zeros(len(x), dtype=int)  # (B,)
            map_diffs += [
                float(np.abs(normalize_map(ra[j]) - normalize_map(ca[j])).max())
                for ra, ca, j in zip(ref_maps, cand_maps, shown, strict=True)
            ]
        if ref_feats is not None and cand_feats is not None:
            scale = np.maximum(np.linalg.norm(ref_feats, axis=1), 1e-6)  # (B,); a ReLU'd CNN vector is never ~0
            feature_diffs += (np.linalg.norm(cand_feats - ref_feats, axis=1) / scale).tolist()
    primary, flag = same_primary / n, same_flag / n
    dmap = max(map_diffs) if map_diffs else None
    dmap95 = float(np.percentile(map_diffs, 95)) if map_diffs else None
    dfeat = max(feature_diffs) if feature_diffs else None
    dfeat95 = float(np.percentile(feature_diffs, 95)) if feature_diffs else None
    return ParityReport(
        runtime=candidate.runtime,
        precision=precision,
        compute_precision=candidate.backend.precision,
        n_images=n,
        max_abs_prob_diff=dp,
        primary_agreement=primary,
        flag_agreement=flag,
        max_abs_map_diff=dmap,
        p95_abs_map_diff=dmap95,
        criterion=criteria(precision),
        passed=passes(precision, dp, primary, flag, dmap, dmap95, dfeat, dfeat95),
        max_rel_feature_diff=dfeat,
        p95_rel_feature_diff=dfeat95,
    )


def prepare_batches(
    predictor: Predictor, images: Sequence[ImageInput], batch_size: int = 16, progress: str | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """Decode and preprocess images once for every comparison.

    Args:
        predictor: decodes and preprocesses (its model is not run).
        images: the images.
        batch_size: images per batch.
        progress: a progress-bar label (on stderr), or ``None`` for none.

    Returns:
        ``(batches, errors)``: float32 batches and the messages of images that could not be read.
    """
    from tqdm import tqdm

    arrays, errors = [], []
    for i, img in enumerate(tqdm(images, desc=progress, unit="img", disable=progress is None, leave=False)):
        p = predictor.prepare(img, str(img) if not isinstance(img, bytes) else f"image-{i}")
        if p.error is not None:
            errors.append(p.error)
        else:
            arrays.append(p.x)
    batches = [np.stack(arrays[i : i + batch_size]) for i in range(0, len(arrays), batch_size)]
    return batches, errors


__all__ = [
    "FP32_FEATURE_TOL",
    "FP32_MAP_TOL",
    "FP32_PROB_TOL",
    "MIN_AGREEMENT",
    "REDUCED_FEATURE_P95_TOL",
    "REDUCED_MAP_P95_TOL",
    "ExportParityError",
    "ParityReport",
    "compare",
    "criteria",
    "passes",
    "prepare_batches",
]
