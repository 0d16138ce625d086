"""Heat maps that show why a model decided: Grad-CAM (CNN), attention and attention rollout (ViT).

* :func:`grad_cam`, :func:`attention_maps`: the explain path, hooks on named layers, ``forward`` untouched.
* :func:`heatmap_model`: a wrapper returning ``(logits, maps, features)`` from one traceable pass, for export.
* :mod:`dermascan.explain.render`: maps -> heat over the original image -> overlay -> base64 PNG, with
  numpy and PIL only.
* :func:`explain_image`, :func:`write_explanation`: one image end to end (the CLI's ``dermascan explain``).
* :func:`sanity_report`: energy inside the lesion mask and the model-randomisation check.

The renderer is imported eagerly; everything that needs torch is imported on first use, so a torch-free
serving process can ``from dermascan.explain import overlay`` (or import ``dermascan.explain.render``)
without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dermascan.explain.render import (
    TURBO,
    colorize,
    crop_box_for,
    encode_png,
    heatmap_from_maps,
    heatmap_on_image,
    normalize_map,
    overlay,
    to_base64,
)

if TYPE_CHECKING:
    from dermascan.explain.attention import (
        AttentionMaps,
        ViTLayout,
        attention_maps,
        attention_rollout,
        cls_attention,
        vit_layout,
    )
    from dermascan.explain.export_head import heatmap_model
    from dermascan.explain.gradcam import GradCAMResult, default_gradcam_layer, grad_cam
    from dermascan.explain.run import (
        METHODS,
        Explanation,
        compute_maps,
        explain_image,
        resolve_method,
        write_explanation,
    )
    from dermascan.explain.sanity import (
        centre_prior,
        energy_in_mask,
        prepare_pairs,
        randomize_model,
        rank_correlation,
        sanity_report,
        uniform_share,
    )

# Public name -> submodule; these import torch, so they load on first attribute access (PEP 562).
_LAZY = {
    **dict.fromkeys(
        ["AttentionMaps", "ViTLayout", "attention_maps", "attention_rollout", "cls_attention", "vit_layout"],
        "attention",
    ),
    "heatmap_model": "export_head",
    **dict.fromkeys(["GradCAMResult", "default_gradcam_layer", "grad_cam"], "gradcam"),
    **dict.fromkeys(
        ["METHODS", "Explanation", "compute_maps", "explain_image", "resolve_method", "write_explanation"], "run"
    ),
    **dict.fromkeys(
        [
            "centre_prior",
            "energy_in_mask",
            "prepare_pairs",
            "randomize_model",
            "rank_correlation",
            "sanity_report",
            "uniform_share",
        ],
        "sanity",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"dermascan.explain.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dermascan.explain' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "TURBO",
    "AttentionMaps",
    "Explanation",
    "GradCAMResult",
    "ViTLayout",
    "attention_maps",
    "attention_rollout",
    "centre_prior",
    "cls_attention",
    "colorize",
    "compute_maps",
    "crop_box_for",
    "default_gradcam_layer",
    "encode_png",
    "energy_in_mask",
    "explain_image",
    "grad_cam",
    "heatmap_from_maps",
    "heatmap_model",
    "heatmap_on_image",
    "normalize_map",
    "overlay",
    "prepare_pairs",
    "randomize_model",
    "rank_correlation",
    "resolve_method",
    "sanity_report",
    "to_base64",
    "uniform_share",
    "vit_layout",
    "write_explanation",
]
