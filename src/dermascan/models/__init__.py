"""Every network behind one door: ``create_model(name, num_classes, weights, freeze, image_size)``.

Registered architectures: ``resnet18``, ``resnet50`` (CNN, Grad-CAM on ``layer4``), ``vit_b_16``,
``vit_tiny`` (ViT, attention maps via :func:`capture_attention`), plus any timm model as ``timm:<name>``.
``model_info(name)`` tells the family and the layers heat maps hook into.
"""

from dermascan.models import resnet, vit  # noqa: F401  (importing registers the architectures)
from dermascan.models._factory import (
    create_model,
    freeze_modules,
    model_info,
    replace_classifier,
    resolve_preprocessing,
    set_frozen_bn_eval,
)
from dermascan.models._registry import TIMM_PREFIX, ModelSpec, get_spec, list_models, register_model
from dermascan.models.checkpoint import LoadedModel, load_checkpoint
from dermascan.models.vit import attention_layer_names, capture_attention
from dermascan.models.weights import (
    WeightsFileError,
    WeightsUnavailableError,
    read_state_dict,
    resolve_weights,
)

__all__ = [
    "TIMM_PREFIX",
    "LoadedModel",
    "ModelSpec",
    "WeightsFileError",
    "WeightsUnavailableError",
    "attention_layer_names",
    "capture_attention",
    "create_model",
    "freeze_modules",
    "get_spec",
    "list_models",
    "load_checkpoint",
    "model_info",
    "read_state_dict",
    "register_model",
    "replace_classifier",
    "resolve_preprocessing",
    "resolve_weights",
    "set_frozen_bn_eval",
]
