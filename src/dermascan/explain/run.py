"""Explain one image with a trained model: the heat map over the original photo, the probabilities, an overlay.

Methods:

* ``auto``: ``gradcam`` for a CNN, ``attention`` for a ViT (what the export head computes, so the CLI and a
  deployed bundle show the same kind of map).
* ``gradcam``: Grad-CAM on the last stage of a CNN; on a ViT it is supported too, on the tokens entering the
  last block's attention (see :mod:`dermascan.explain.gradcam`).
* ``attention``: the last block's class-token attention, head mean (ViT only; the brief, section 3.7).
* ``rollout``: attention rollout across all blocks (ViT only).

A CNN has no attention: ``attention`` / ``rollout`` on one raise ``ValueError``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from dermascan._io import write_bytes
from dermascan.data.io import load_image
from dermascan.data.preprocess import preprocess
from dermascan.explain.attention import attention_maps, is_vit
from dermascan.explain.gradcam import grad_cam
from dermascan.explain.render import heatmap_on_image, overlay
from dermascan.models import LoadedModel

Method = Literal["auto", "gradcam", "attention", "rollout"]
METHODS: tuple[str, ...] = ("auto", "gradcam", "attention", "rollout")


class Explanation(NamedTuple):
    """What :func:`explain_image` returns (unpacks as ``heat, probs, overlay``).

    Attributes:
        heat: ``(H, W)`` float32 in ``[0, 1]`` over the original image; zero outside the model's centre crop.
        probs: ``(K,)`` class probabilities, ISIC 2018 order.
        overlay: the original image with the heat map blended over the crop region.
    """

    heat: np.ndarray
    probs: np.ndarray
    overlay: Image.Image


def resolve_method(model: nn.Module, method: str = "auto") -> str:
    """The concrete method for ``model``: ``auto`` becomes ``gradcam`` (CNN) or ``attention`` (ViT).

    Raises:
        ValueError: unknown method, or an attention method for a CNN.
    """
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    vit = is_vit(model)
    if method == "auto":
        return "attention" if vit else "gradcam"
    if method in ("attention", "rollout") and not vit:
        arch = getattr(model, "arch", type(model).__name__)
        raise ValueError(
            f"{arch} is a CNN and has no attention to show; use method='gradcam' (or 'auto') for it, "
            "or explain a ViT model"
        )
    return method


def compute_maps(
    model: nn.Module,
    x: Tensor,
    method: str = "auto",
    class_index: int | Sequence[int] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Raw heat maps of a batch with the chosen method, and the logits of the same pass.

    Args:
        model: a model from ``create_model`` / ``load_checkpoint``.
        x: ``(B, 3, H, W)`` normalised input on the model's device.
        method: see the module docstring.
        class_index: class to explain for ``gradcam`` (``None``: each image's prediction); attention maps are
            class-agnostic and ignore it.

    Returns:
        ``(maps (B, h, w), logits (B, K))``, detached; maps are non-negative and not normalised.
    """
    method = resolve_method(model, method)
    if method == "gradcam":
        result = grad_cam(model, x, class_index=class_index)
        return result.maps, result.logits
    att = attention_maps(model, x)
    return (att.mean if method == "attention" else att.rollout), att.logits


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def explain_image(
    loaded: LoadedModel,
    image_path: str | os.PathLike[str] | Image.Image,
    method: str = "auto",
    class_index: int | None = None,
    alpha: float = 0.45,
) -> Explanation:
    """Explain one image: heat map over the original photo, probabilities, overlay.

    The image goes through the model's own eval preprocessing (resize, centre crop); the map of that crop is
    placed back on the crop's region of the original image (see :mod:`dermascan.explain.render`).

    Args:
        loaded: from :func:`dermascan.models.load_checkpoint`.
        image_path: an image file, or an already decoded PIL image.
        method: ``auto`` | ``gradcam`` | ``attention`` | ``rollout``.
        class_index: class to explain (Grad-CAM only); ``None`` explains the predicted class.
        alpha: overlay opacity.

    Returns:
        :class:`Explanation` ``(heat, probs, overlay)``.

    Raises:
        ValueError: bad method for the model, or ``class_index`` out of range.
        dermascan.data.io.ImageError: unreadable image.
    """
    model = loaded.model
    k = len(loaded.classes)
    if class_index is not None and not 0 <= class_index < k:
        raise ValueError(f"class_index must be in 0..{k - 1} ({', '.join(loaded.classes)}), got {class_index}")
    image = (
        image_path.convert("RGB")
        if isinstance(image_path, Image.Image)
        else load_image(image_path, draft=loaded.preprocessing.jpeg_draft)
    )
    # The Predictor's own decode and preprocessing (numpy), so the map is of exactly what is served.
    x = torch.from_numpy(preprocess(image, loaded.preprocessing))[None].to(_device(model))  # (1, 3, S, S)
    maps, logits = compute_maps(model, x, method, class_index)
    probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()  # (K,)
    # compute_maps already picked the class (or the map is class-agnostic): one map per image.
    heat, box = heatmap_on_image(maps[:1].float().cpu().numpy(), 0, image.size, loaded.preprocessing)  # (H, W)
    return Explanation(heat=heat, probs=probs, overlay=overlay(image, heat, alpha=alpha, box=box))


def write_explanation(
    loaded: LoadedModel,
    image_path: str | os.PathLike[str] | Image.Image,
    out_png: str | os.PathLike[str],
    method: str = "auto",
    class_index: int | None = None,
    alpha: float = 0.45,
) -> Explanation:
    """Explain one image and write the overlay as a PNG (atomically).

    Arguments as :func:`explain_image`; ``out_png`` is the file to write (parents are created).

    Returns:
        The :class:`Explanation`, so a caller can also print the predicted class.
    """
    result = explain_image(loaded, image_path, method=method, class_index=class_index, alpha=alpha)
    buf = io.BytesIO()
    result.overlay.save(buf, format="PNG")
    write_bytes(out_png, buf.getvalue())
    return result


__all__ = [
    "METHODS",
    "Explanation",
    "Method",
    "compute_maps",
    "explain_image",
    "is_vit",
    "resolve_method",
    "write_explanation",
]
