"""Image transforms (torchvision transforms v2). The eval transform is the model's own preprocessing;
the training transform adds the brief's augmentation on top of it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode, v2

from dermascan.config import Preprocessing

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation (brief 3.1: rotation, flips, colour jitter, random erasing).

    Attributes:
        rotation: maximum rotation in degrees either way; lesions have no natural orientation.
        crop_scale: area range of the random resized crop, relative to the image.
        color_jitter: brightness/contrast/saturation jitter strength; dermoscopes differ in colour.
        hue: hue jitter (kept small: hue carries diagnostic colour, e.g. blue-white veil).
        erasing: probability of random erasing (occlusion by hair, bubbles).
    """

    rotation: float = 180.0
    crop_scale: tuple[float, float] = (0.4, 1.0)
    color_jitter: float = 0.2
    hue: float = 0.02
    erasing: float = 0.25

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 <= self.erasing <= 1:
            raise ValueError(f"erasing is a probability, got {self.erasing}")


def eval_transform(pre: Preprocessing) -> v2.Compose:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise. PIL image in, (3, H, W) out.

    The resize runs on the PIL image (PIL's resampler), which the torch-free serving path reproduces.
    """
    return v2.Compose(
        [
            v2.Resize(pre.resize_size, interpolation=_INTERPOLATION[pre.interpolation], antialias=True),
            v2.CenterCrop(pre.input_size),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )


def train_transform(pre: Preprocessing, aug: Augmentation | None = None) -> v2.Compose:
    """Augmented training transform producing the same size and normalisation as :func:`eval_transform`."""
    aug = aug or Augmentation()
    interp = _INTERPOLATION[pre.interpolation]
    steps: list[v2.Transform] = [
        # Down to the eval resize first, so rotation and cropping work on small images (fast on CPU).
        v2.Resize(pre.resize_size, interpolation=interp, antialias=True),
        v2.RandomRotation(aug.rotation, interpolation=interp),
        v2.RandomResizedCrop(pre.input_size, scale=aug.crop_scale, interpolation=interp, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
    ]
    if aug.color_jitter > 0:
        j = aug.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=aug.hue))
    steps += [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
    ]
    if aug.erasing > 0:
        steps.append(v2.RandomErasing(p=aug.erasing, scale=(0.02, 0.1)))
    return v2.Compose(steps)
