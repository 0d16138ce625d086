"""ResNet-50 (the brief's baseline, section 3.3) and ResNet-18 (a small variant for CPU demos and tests).

Thin entry points: each builds torchvision's network with random weights and the requested head size.
Weights, the head swap, freezing and preprocessing are the factory's job (``create_model``).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import resnet50 as tv_resnet50

from dermascan.models._registry import register_model

#: The brief's "first 6 layers": the first six children of a torchvision ResNet (the stem plus the first
#: two stages). ``relu`` and ``maxpool`` hold no parameters; they are listed so the count matches.
RESNET_FROZEN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")

_RESNET_SPEC = {
    "family": "cnn",
    "default_image_size": 224,
    "classifier": "fc",
    "freeze": RESNET_FROZEN,
    "gradcam_layer": "layer4",
}


@register_model(
    "resnet50",
    imagenet_weights=ResNet50_Weights.IMAGENET1K_V2,
    description="ResNet-50 (torchvision), the brief's CNN baseline; fc -> Linear(2048, num_classes)",
    **_RESNET_SPEC,
)
def resnet50(num_classes: int, image_size: int) -> nn.Module:
    """ResNet-50 with random weights; the global average pool makes any ``image_size`` >= 32 work."""
    return tv_resnet50(num_classes=num_classes)


@register_model(
    "resnet18",
    imagenet_weights=ResNet18_Weights.IMAGENET1K_V1,
    description="ResNet-18 (torchvision), small CNN for CPU demos; fc -> Linear(512, num_classes)",
    **_RESNET_SPEC,
)
def resnet18(num_classes: int, image_size: int) -> nn.Module:
    """ResNet-18 with random weights; the global average pool makes any ``image_size`` >= 32 work."""
    return tv_resnet18(num_classes=num_classes)


__all__ = ["RESNET_FROZEN", "resnet18", "resnet50"]
