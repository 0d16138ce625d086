"""Any timm architecture as ``timm:<name>`` (e.g. ``timm:resnet18``, ``timm:vit_tiny_patch16_224``).

timm's own ``create_model`` builds the network and swaps the head; this module adds DermaScan's contract
around it: the same ``weights`` values as the torchvision models (with fail-fast offline behaviour), the
``preprocessing`` and ``arch`` attributes, and ``model_info`` without building real weights.

timm is imported on first use: it adds ~0.4 s to start-up, which the CLI and the service should not pay
when they only serve torchvision models.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from dermascan.config import Preprocessing
from dermascan.models import weights as weights_lib
from dermascan.models._registry import TIMM_PREFIX
from dermascan.models.vit import _is_timm_attention


def _timm() -> Any:
    import timm

    return timm


def _check_name(name: str) -> None:
    timm = _timm()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"unknown timm model {name!r} (from '{TIMM_PREFIX}{name}').{hint} "
            "List them with timm.list_models('*pattern*')."
        )


def _classifier_name(name: str) -> str | None:
    timm = _timm()
    # Distilled models name two heads, e.g. ("head", "head_dist"); the first is the class head.
    classifier = timm.models.get_pretrained_cfg_value(name, "classifier")
    if isinstance(classifier, list | tuple):
        classifier = classifier[0] if classifier else None
    return classifier


def _build(name: str, num_classes: int, image_size: int | None, **kwargs: Any) -> nn.Module:
    timm = _timm()
    if image_size is not None:
        try:  # transformers fix their position embedding to the input side
            return timm.create_model(name, num_classes=num_classes, img_size=image_size, **kwargs)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
            # A CNN takes any input side: image_size then sets only its preprocessing (timm_preprocessing).
    return timm.create_model(name, num_classes=num_classes, **kwargs)


def _cached_pretrained_file(cfg: Any) -> Path | None:
    """A local copy of the pretrained file (Hugging Face cache or torch hub cache), if any."""
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm installs huggingface_hub
            return None
        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            if filename:
                found = try_to_load_from_cache(cfg.hf_hub_id, filename)
                if isinstance(found, str):
                    return Path(found)
    if cfg.url:
        cached = weights_lib.hub_cache_path(cfg.url)
        if cached.is_file():
            return cached
    return None


def _pretrained_host(cfg: Any) -> str:
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import constants

            return urlparse(constants.ENDPOINT).hostname or "huggingface.co"
        except ImportError:  # pragma: no cover
            return "huggingface.co"
    return urlparse(cfg.url).hostname or ""


def _timm_fix_message(name: str, cfg: Any, reason: str) -> str:
    where = (
        f"the Hugging Face cache (models--{cfg.hf_hub_id.replace('/', '--')} under $HF_HUB_CACHE, "
        "default ~/.cache/huggingface/hub)"
        if cfg.hf_hub_id
        else f"{weights_lib.hub_cache_path(cfg.url)}"
    )
    return (
        f"pretrained weights for '{TIMM_PREFIX}{name}' are not cached locally and cannot be downloaded: "
        f"{reason}.\n"
        "Fix it in one of three ways:\n"
        f"  1. on a machine with internet run: python -c \"import timm; timm.create_model('{name}', "
        f'pretrained=True)" and copy {where} to this machine;\n'
        "  2. save that model's state_dict() to a file and pass --weights PATH (weights=PATH);\n"
        "  3. pass --weights none (weights='none') to train from random initialisation."
    )


def _create_pretrained(name: str, num_classes: int, image_size: int | None) -> nn.Module:
    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ValueError(f"timm model {name!r} has no pretrained weights; use weights='none' or a PATH")
    local = _cached_pretrained_file(cfg)
    if local is not None:
        # An explicit file skips timm's network round trip (the Hugging Face client retries for ~45 s
        # before it falls back to its cache when offline).
        return _build(name, num_classes, image_size, pretrained=True, pretrained_cfg_overlay={"file": str(local)})
    host = _pretrained_host(cfg)
    if not weights_lib.host_reachable(host):
        raise weights_lib.WeightsUnavailableError(_timm_fix_message(name, cfg, f"{host} is unreachable (no internet?)"))
    try:
        return _build(name, num_classes, image_size, pretrained=True)
    except (OSError, RuntimeError) as e:  # huggingface_hub errors derive from OSError
        raise weights_lib.WeightsUnavailableError(_timm_fix_message(name, cfg, f"{type(e).__name__}: {e}")) from e


def _freeze_stem(model: nn.Module, name: str) -> None:
    # timm's group_matcher names each model's stem (patch embedding + position/class tokens for a ViT,
    # conv1/bn1 for a ResNet): the one freezing rule that means the same thing across timm's families.
    matcher = model.group_matcher(coarse=True).get("stem") if hasattr(model, "group_matcher") else None
    if not isinstance(matcher, str):
        raise ValueError(f"freeze=True is not supported for timm model {name!r} (no stem pattern)")
    for pname, p in model.named_parameters():
        if re.match(matcher, pname):
            p.requires_grad_(False)


def timm_preprocessing(model: nn.Module, image_size: int | None) -> Preprocessing:
    """Eval preprocessing resolved from the model's own pretrained config (timm's ``resolve_data_config``).

    timm's ``crop_pct`` becomes ``resize_size = floor(input_size / crop_pct)``; interpolations other than
    bilinear/bicubic fall back to bilinear (the only two the serving path implements).
    """
    cfg = _timm().data.resolve_data_config({}, model=model)
    input_size = int(image_size or cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    interpolation = cfg.get("interpolation", "bilinear")
    return Preprocessing(
        input_size=input_size,
        resize_size=max(input_size, math.floor(input_size / crop_pct)),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
    )


def create_timm_model(
    name: str,
    num_classes: int,
    weights: weights_lib.WeightsArg = "none",
    freeze: bool = False,
    image_size: int | None = None,
) -> nn.Module:
    """Build ``timm:<name>``; called by ``create_model``, which documents the arguments.

    ``freeze=True`` freezes timm's "stem" parameter group (``group_matcher``).
    """
    _check_name(name)
    resolved = weights_lib.resolve_weights(weights)
    if resolved == "imagenet":
        model = _create_pretrained(name, num_classes, image_size)
    elif resolved == "none":
        model = _build(name, num_classes, image_size)
    else:
        state = weights_lib.read_state_dict(resolved)
        classifier = _classifier_name(name)
        file_classes = weights_lib.head_out_features(state, classifier) if classifier else None
        model = _build(name, file_classes or num_classes, image_size)
        weights_lib.load_state_dict_checked(model, state, f"{TIMM_PREFIX}{name}", str(resolved), headless_ok=classifier)
        if file_classes is not None and file_classes != num_classes:
            model.reset_classifier(num_classes)
    if freeze:
        _freeze_stem(model, name)
    model.arch = f"{TIMM_PREFIX}{name}"
    model.preprocessing = timm_preprocessing(model, image_size)
    return model


def timm_model_info(name: str) -> dict[str, Any]:
    """``model_info`` for ``timm:<name>``, from a weightless build on the meta device (milliseconds).

    ``family`` is ``vit`` when ``capture_attention`` can read the model's attention (timm ``Attention``
    modules), else ``cnn`` (use Grad-CAM on ``gradcam_layer``).
    """
    timm = _timm()
    _check_name(name)
    with torch.device("meta"):
        model = timm.create_model(name)
    is_vit = any(_is_timm_attention(m) for m in model.modules())
    cfg = timm.models.get_pretrained_cfg(name)
    feature_info = getattr(model, "feature_info", None)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    return {
        "name": f"{TIMM_PREFIX}{name}",
        "source": "timm",
        "family": "vit" if is_vit else "cnn",
        "default_image_size": int(cfg.input_size[-1]) if cfg else 224,
        "classifier": _classifier_name(name),
        "freeze": ["<timm stem group>"],
        "gradcam_layer": feature_info[-1]["module"] if feature_info else None,
        "attention_blocks": "blocks" if is_vit and hasattr(model, "blocks") else None,
        "patch_size": int(patch[0]) if is_vit and patch is not None else None,
        "num_prefix_tokens": int(getattr(model, "num_prefix_tokens", 1)) if is_vit else 0,
        "imagenet_weights": (cfg.hf_hub_id or cfg.url) if cfg else None,
        "description": f"timm {name}",
    }


__all__ = ["create_timm_model", "timm_model_info", "timm_preprocessing"]
