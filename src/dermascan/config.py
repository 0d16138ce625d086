"""Typed configuration shared by every part of DermaScan. Pure dataclasses: no torch import here.

The preprocessing config travels with a model into its checkpoints and bundles, so that training,
evaluation, the Predictor and the torch-free serving path all prepare an image the same way.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


#: Smallest shorter side a JPEG is decoded at by default (:attr:`Preprocessing.jpeg_draft`): the heat-map overlay
#: is drawn at the decoded size, and 384 px reads well on the clinician's page.
DRAFT_MIN_SIDE = 384


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input (the eval transform; training adds augmentation on top).

    Attributes:
        input_size: side of the square network input in pixels (224 for ResNet-50/ViT-B/16).
        resize_size: the shorter image side is resized to this before the centre crop
            (the torchvision convention: 256 for a 224 crop).
        mean: per-channel mean subtracted after scaling to [0, 1] (ImageNet statistics by default).
        std: per-channel standard deviation divided by after subtracting the mean.
        interpolation: resampling filter for the resize: ``bilinear`` or ``bicubic``.
        jpeg_draft: decode a JPEG at a reduced DCT scale (1/2, 1/4 or 1/8) that keeps its shorter side at
            least this many pixels (never below ``resize_size``): a 1024x768 photo decodes at 512x384, the
            decoder skips part of its work and the resize has a quarter of the pixels. The floor is above the
            network's needs because the heat map is drawn over the decoded image and must stay readable on
            the page. It changes pixel values a little, so it is part of the model's preprocessing: training,
            evaluation and serving all decode through it. ``None``: full scale, as runs and bundles written
            before this field existed did (``from_dict`` reads them so).
    """

    input_size: int = 224
    resize_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    jpeg_draft: int | None = DRAFT_MIN_SIDE

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.resize_size is None:
            # torchvision's 256/224 ratio: the crop drops the dark dermoscope corners a little.
            object.__setattr__(self, "resize_size", round(self.input_size * 256 / 224))
        if self.resize_size < self.input_size:
            raise ValueError(f"resize_size ({self.resize_size}) must be >= input_size ({self.input_size})")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels with std > 0, got {self.mean}, {self.std}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.jpeg_draft is not None:
            object.__setattr__(self, "jpeg_draft", max(int(self.jpeg_draft), self.resize_size))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        d = {"jpeg_draft": None, **d}  # written before draft decoding existed: those models saw full-scale decodes
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


__all__ = ["DRAFT_MIN_SIDE", "IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing"]


def read_yaml_mapping(path: str | os.PathLike[str], option: str, error: type[Exception]) -> dict[str, Any]:
    """A YAML file of settings, as a mapping (an empty file is ``{}``).

    Args:
        path: the file.
        option: the command-line option that named it (``--config``), for the message.
        error: the exception to raise, the caller's own user-facing error class.

    Raises:
        error: the file is missing, not YAML, or not a mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"{option} {p}: file not found")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise error(f"{option} {p}: not valid YAML ({e})") from e
    if not isinstance(values, dict):
        raise error(f"{option} {p}: expected a mapping of settings, got {type(values).__name__}")
    return values
