"""``create_model``: the one door to every network (registered torchvision models and ``timm:<name>``).

Every model leaves the factory in the same shape, whatever its family or weights:

* its head is ``nn.Linear(features, num_classes)``;
* ``model.arch`` is the name it was built from (so a checkpoint can rebuild it);
* ``model.preprocessing`` is the eval :class:`~dermascan.config.Preprocessing` (from the torchvision
  weights' own ``transforms()`` or timm's pretrained config), so no caller hard-codes 224 or the ImageNet
  mean.

Frozen BatchNorm: ``freeze=True`` sets ``requires_grad=False``, but ``model.train()`` would still put the
frozen BatchNorm layers in training mode and let their running statistics drift with each batch. Call
:func:`set_frozen_bn_eval` after every ``model.train()`` (the Lightning module does it in
``on_train_epoch_start``). A helper rather than a ``train()`` override keeps the model a plain
torchvision/timm class that exports and pickles as usual.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dermascan.config import Preprocessing
from dermascan.models import weights as weights_lib
from dermascan.models._registry import TIMM_PREFIX, ModelSpec, get_spec, list_models
from dermascan.models.timm_models import create_timm_model, timm_model_info
from dermascan.taxonomy import NUM_CLASSES


def create_model(
    name: str,
    num_classes: int = NUM_CLASSES,
    weights: weights_lib.WeightsArg = "none",
    freeze: bool = False,
    image_size: int | None = None,
) -> nn.Module:
    """Build a classifier by name.

    Args:
        name: a registered name (``list_models()``: ``resnet18``, ``resnet50``, ``vit_b_16``, ``vit_tiny``)
            or ``timm:<name>`` for any timm architecture.
        num_classes: size of the new head (7 ISIC 2018 classes by default).
        weights: ``"none"`` (random initialisation), ``"imagenet"`` (torchvision's ImageNet weights through
            the torch hub cache; an error with the fix if they cannot be had, never a silent random model),
            or the path of a local file: a state dict of this architecture with any head size (a DermaScan
            model, or the ImageNet ``.pth`` a clinic downloaded), a Lightning checkpoint, or a
            ``.safetensors`` file. A head of another size is loaded with the backbone, then replaced; a
            file without head keys (a bare backbone) keeps the new, randomly initialised head.
        freeze: freeze the modules listed in ``model_info(name)["freeze"]``: the first 6 children of a
            ResNet (conv1, bn1, relu, maxpool, layer1, layer2: the brief's baseline), the patch embedding
            ``conv_proj`` of a ViT, timm's "stem" group. See :func:`set_frozen_bn_eval` for BatchNorm.
        image_size: square input side in pixels; ``None`` uses the architecture's default (224, or 64 for
            ``vit_tiny``). ViTs are built for exactly this size; CNNs accept any size and it only sets
            ``model.preprocessing``.

    Returns:
        The model, in train mode, with ``model.arch`` and ``model.preprocessing`` set.

    Raises:
        ValueError: unknown name (with the available ones), bad ``image_size``, or ``"imagenet"`` for an
            architecture without ImageNet weights.
        FileNotFoundError: ``weights`` is a path that does not exist.
        WeightsUnavailableError: ImageNet weights are neither cached nor downloadable (message: the fix).
        WeightsFileError: the weights file is unreadable, not a state dict, or for another architecture.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    if name.startswith(TIMM_PREFIX):
        return create_timm_model(name[len(TIMM_PREFIX) :], num_classes, weights, freeze, image_size)

    spec = get_spec(name)
    image_size = spec.default_image_size if image_size is None else int(image_size)
    resolved = weights_lib.resolve_weights(weights)

    state: dict[str, Any] | None = None
    source = ""
    if resolved == "imagenet":
        if spec.imagenet_weights is None:
            with_weights = [n for n in list_models() if get_spec(n).imagenet_weights is not None]
            raise ValueError(
                f"{name} has no ImageNet weights; use weights='none' or a local file, or an architecture "
                f"that has them: {', '.join(with_weights)}"
            )
        state = weights_lib.fetch_torchvision_weights(spec.imagenet_weights, name)
        source = str(spec.imagenet_weights)
    elif resolved != "none":
        state = weights_lib.read_state_dict(resolved)
        source = str(resolved)

    # Build with the head the weights carry (1000 ImageNet classes, 7 for a DermaScan model), load the
    # whole network strictly, and only then swap in the requested head: every backbone key is checked.
    file_classes = weights_lib.head_out_features(state, spec.classifier) if state is not None else None
    model = spec.builder(num_classes=file_classes or num_classes, image_size=image_size)
    if state is not None:
        if spec.adapt_state_dict is not None:
            state = spec.adapt_state_dict(state, model)
        weights_lib.load_state_dict_checked(model, state, name, source, headless_ok=spec.classifier)
        if file_classes is not None and file_classes != num_classes:
            replace_classifier(model, spec.classifier, num_classes)

    if freeze:
        freeze_modules(model, spec.freeze)
    model.arch = name
    model.preprocessing = resolve_preprocessing(spec, image_size)
    return model


def replace_classifier(model: nn.Module, classifier: str, num_classes: int) -> nn.Linear:
    """Replace the ``nn.Linear`` at dotted path ``classifier`` with a fresh ``Linear(in, num_classes)``."""
    old = model.get_submodule(classifier)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{classifier} of {type(model).__name__} is a {type(old).__name__}, not nn.Linear")
    head = nn.Linear(old.in_features, num_classes)
    model.set_submodule(classifier, head)
    return head


def freeze_modules(model: nn.Module, names: tuple[str, ...] | list[str]) -> None:
    """Set ``requires_grad=False`` on every parameter of the named submodules."""
    for name in names:
        model.get_submodule(name).requires_grad_(False)


def set_frozen_bn_eval(model: nn.Module) -> int:
    """Put every BatchNorm layer whose parameters are all frozen into eval mode.

    Call it after each ``model.train()``: frozen layers must also keep their ImageNet running statistics,
    which BatchNorm would otherwise update from every training batch.

    Returns:
        How many BatchNorm layers were switched to eval mode.
    """
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
                count += 1
    return count


def resolve_preprocessing(spec: ModelSpec, image_size: int) -> Preprocessing:
    """Eval preprocessing of a registered model at ``image_size``.

    Read from the torchvision weights' own ``transforms()`` (ResNet-50 V2: resize 232, crop 224, bilinear;
    ViT-B/16: resize 256, crop 224, bilinear), with the resize scaled by ``image_size / crop``; models
    without weights get the torchvision default (resize = 256/224 of the input, bilinear, ImageNet mean/std).
    """
    if spec.imagenet_weights is None:
        return Preprocessing(input_size=image_size)
    t = spec.imagenet_weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    return Preprocessing(
        input_size=image_size,
        resize_size=round(image_size * resize / crop),
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )


def model_info(name: str) -> dict[str, Any]:
    """What downstream code needs to know about an architecture, without building it.

    Returns:
        A dict with ``name``, ``source`` (torchvision/timm), ``family`` (``cnn`` or ``vit``),
        ``default_image_size``, ``classifier``, ``freeze`` (modules ``freeze=True`` freezes),
        ``gradcam_layer`` (the last feature map: ``(B, C, H, W)`` for a CNN, tokens ``(B, N+1, D)`` for a
        ViT), ``attention_blocks`` (e.g. ``encoder.layers``; ``None`` for a CNN), ``patch_size``,
        ``num_prefix_tokens`` (class token count, 0 for a CNN), ``imagenet_weights`` (URL or hub id, or
        ``None``) and ``description``.
    """
    if name.startswith(TIMM_PREFIX):
        return timm_model_info(name[len(TIMM_PREFIX) :])
    spec = get_spec(name)
    return {
        "name": spec.name,
        "source": "torchvision",
        "family": spec.family,
        "default_image_size": spec.default_image_size,
        "classifier": spec.classifier,
        "freeze": list(spec.freeze),
        "gradcam_layer": spec.gradcam_layer,
        "attention_blocks": spec.attention_blocks,
        "patch_size": spec.patch_size,
        "num_prefix_tokens": 1 if spec.family == "vit" else 0,
        "imagenet_weights": spec.imagenet_weights.url if spec.imagenet_weights is not None else None,
        "description": spec.description,
    }


__all__ = [
    "create_model",
    "freeze_modules",
    "model_info",
    "replace_classifier",
    "resolve_preprocessing",
    "set_frozen_bn_eval",
]
