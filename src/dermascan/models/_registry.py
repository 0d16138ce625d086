"""The model registry: every architecture DermaScan can build, by name, with what the rest of the code needs
to know about it (family, default input size, the layers heat maps hook into, what ``freeze`` freezes).

Entry points register themselves with ``@register_model(name, ...)`` (the torchvision ``_api.py`` pattern); a
second registration under the same name raises, so two files can never silently shadow each other. Any timm
architecture is reachable as ``timm:<name>`` without registration (see ``timm_models.py``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

#: ``builder(num_classes=..., image_size=...) -> nn.Module``: random initialisation, no weights loading.
Builder = Callable[..., nn.Module]

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class ModelSpec:
    """What the factory and the explainers need to know about one registered architecture.

    Attributes:
        name: registry name (``resnet50``); becomes ``model.arch``.
        builder: builds the randomly initialised network for ``num_classes`` and ``image_size``.
        family: ``cnn`` or ``vit``: decides Grad-CAM versus attention maps downstream.
        default_image_size: input side in pixels when ``create_model(image_size=None)``.
        classifier: dotted name of the final ``nn.Linear`` that ``create_model`` replaces.
        freeze: dotted names of the modules whose parameters ``freeze=True`` freezes.
        gradcam_layer: module whose output is the last spatial feature map: ``(B, C, H, W)`` for a CNN,
            tokens ``(B, N + 1, D)`` (class token first) for a ViT.
        attention_blocks: dotted name of the container of transformer blocks (``None`` for a CNN).
        patch_size: ViT patch side in pixels (``None`` for a CNN): the token grid is ``image_size // patch``.
        imagenet_weights: the torchvision ``WeightsEnum`` member ``weights="imagenet"`` loads, if any. Its
            ``transforms()`` also gives the eval preprocessing.
        fixed_image_size: the network only accepts ``image_size`` inputs (ViTs: the position embedding).
        adapt_state_dict: optional ``fn(state_dict, model) -> state_dict`` run before loading (e.g. resize a
            ViT position embedding to another image size).
        description: one line for ``dermascan models`` listings.
    """

    name: str
    builder: Builder
    family: Literal["cnn", "vit"]
    default_image_size: int
    classifier: str
    freeze: tuple[str, ...]
    gradcam_layer: str
    attention_blocks: str | None = None
    patch_size: int | None = None
    imagenet_weights: Any = None
    fixed_image_size: bool = False
    adapt_state_dict: Callable[[dict[str, Any], nn.Module], dict[str, Any]] | None = field(default=None, repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in ("cnn", "vit"):
            raise ValueError(f"family must be 'cnn' or 'vit', got {self.family!r} for model {self.name!r}")


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, **spec: Any) -> Callable[[Builder], Builder]:
    """Decorator that registers a builder under ``name`` with the :class:`ModelSpec` fields in ``spec``.

    Example::

        @register_model("resnet18", family="cnn", default_image_size=224, classifier="fc",
                        freeze=("conv1", "bn1"), gradcam_layer="layer4")
        def resnet18(num_classes: int, image_size: int) -> nn.Module:
            return torchvision.models.resnet18(num_classes=num_classes)

    Raises:
        ValueError: ``name`` is already registered, or uses the reserved ``timm:`` prefix.
    """
    if name.startswith(TIMM_PREFIX):
        raise ValueError(f"model names starting with {TIMM_PREFIX!r} are reserved for timm, got {name!r}")

    def decorator(fn: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(
                f"a model named {name!r} is already registered (by {_MODELS[name].builder.__module__}); "
                "pick another name"
            )
        _MODELS[name] = ModelSpec(name=name, builder=fn, **spec)
        return fn

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern`` (``"vit*"``).

    timm architectures are not listed (there are over a thousand): any of them is available as
    ``timm:<name>``; ``timm.list_models()`` lists them.
    """
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model.

    Raises:
        ValueError: unknown name, with the available names and the ``timm:<name>`` form.
    """
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}. Available: {', '.join(list_models())}; "
            f"or any timm architecture as '{TIMM_PREFIX}<name>' (e.g. '{TIMM_PREFIX}resnet18', "
            f"'{TIMM_PREFIX}vit_tiny_patch16_224'; see timm.list_models())"
        ) from None


__all__ = ["TIMM_PREFIX", "Builder", "ModelSpec", "get_spec", "list_models", "register_model"]
