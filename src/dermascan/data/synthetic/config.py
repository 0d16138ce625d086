"""What the synthetic generator makes: :class:`SynthConfig`, the dermoscope profiles, the class priors.

Also the seed-sequence tags every stage of the generator draws its random stream from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dermascan.taxonomy import CLASSES

#: HAM10000's class frequencies (10,015 images).
HAM10000_PRIORS: dict[str, float] = {
    "MEL": 0.111, "NV": 0.669, "BCC": 0.051, "AKIEC": 0.033, "BKL": 0.110, "DF": 0.011, "VASC": 0.014,
}  # fmt: skip
#: Fitzpatrick I..VI, skewed to I-III like public dermoscopy collections, with enough V-VI to audit.
DEFAULT_FITZPATRICK_MIX: tuple[float, ...] = (0.20, 0.35, 0.25, 0.10, 0.06, 0.04)

# Seed-sequence tags keep the independent random streams of one (seed, number) apart.
TAG_LAYOUT, TAG_LESION_META, TAG_LESION_DRAW, TAG_IMAGE_META, TAG_IMAGE_DRAW = 11, 12, 13, 14, 15
# Small outputs are drawn at this side and downsampled, so thin structures average like a real resize.
MIN_RENDER = 128


@dataclass(frozen=True)
class DermoscopeProfile:
    """How one dermoscope renders colour and light.

    Attributes:
        name: the value written to the ``dermoscope`` metadata column.
        gains: per-channel (R, G, B) multipliers: the colour cast of the light and sensor.
        exposure: overall brightness multiplier.
        gamma: tone curve exponent applied after the gains (below 1 brightens mid-tones).
        saturation: colour saturation multiplier (1 keeps it).
        vignette_rate: chance that a capture shows the dark circular rim of the lens field.
        bubble_rate: chance of gel/air bubbles (contact immersion devices have more).
        blur_rate: chance of an out-of-focus capture.
    """

    name: str
    gains: tuple[float, float, float]
    exposure: float
    gamma: float
    saturation: float
    vignette_rate: float
    bubble_rate: float
    blur_rate: float


#: Device profiles. The first three are drawn by default; ``newdevice`` simulates an unseen device
#: (greenish-yellow cast, over-exposed, flatter tones) for drift tests.
DERMOSCOPES: dict[str, DermoscopeProfile] = {
    p.name: p
    for p in (
        DermoscopeProfile("dermlite", (1.00, 0.97, 0.96), 1.00, 1.00, 1.00, 0.20, 0.10, 0.06),
        DermoscopeProfile("heine", (0.95, 0.97, 1.04), 0.94, 1.05, 0.92, 0.55, 0.25, 0.08),
        DermoscopeProfile("fotofinder", (1.05, 0.95, 0.93), 1.04, 0.95, 1.12, 0.10, 0.06, 0.10),
        DermoscopeProfile("newdevice", (0.93, 1.04, 0.84), 1.15, 0.85, 0.80, 0.40, 0.15, 0.08),
    )
}


@dataclass(frozen=True)
class SynthConfig:
    """What the synthetic generator makes. Every field is validated; errors name the field.

    Attributes:
        n: number of images.
        size: side of the square images in pixels (at least 32).
        seed: the dataset seed (a non-negative integer); image ``i`` depends only on ``(seed, i)``.
        class_priors: relative frequency of each class per lesion, keyed by class code (MEL, NV,
            ...); every class must be present (0 allowed); normalised to sum to 1. ``None`` means
            HAM10000's frequencies.
        fitzpatrick_mix: probabilities of Fitzpatrick skin types I..VI (normalised).
        atypical_nevus_rate: share of nevi drawn most of the way toward melanoma (dysplastic-looking).
        featureless_melanoma_rate: share of melanomas drawn only part of the way from nevus
            (early, featureless melanomas).
        feature_overlap: 0..1, how much class feature distributions overlap: the noise of each
            melanocytic feature around the lesion's malignancy, and the share of non-melanocytic
            lesions drawn as pigmented look-alikes. 0 is the easiest set, 1 the hardest.
        nuisance_rate: global multiplier on the rates of hair, ruler, ink, bubbles, vignette and blur
            (0 switches every nuisance off; rates are capped at 1).
        dermoscopes: device profiles drawn (uniformly) per image; names from ``DERMOSCOPES``. Pass
            ``("newdevice",)`` to simulate a new device.
        multi_image_lesion_rate: share of lesions photographed 2-3 times (different rotation, light,
            zoom and framing), so that splits must group by lesion.
        jpeg_quality: JPEG quality of the written images (1-95).
        workers: worker processes for ``generate_dataset`` (0 means ``os.cpu_count()``).
    """

    n: int = 2000
    size: int = 224
    seed: int = 0
    class_priors: dict[str, float] | None = None
    fitzpatrick_mix: tuple[float, ...] = DEFAULT_FITZPATRICK_MIX
    atypical_nevus_rate: float = 0.10
    featureless_melanoma_rate: float = 0.20
    feature_overlap: float = 0.25
    nuisance_rate: float = 1.0
    dermoscopes: tuple[str, ...] = ("dermlite", "heine", "fotofinder")
    multi_image_lesion_rate: float = 0.20
    jpeg_quality: int = 90
    workers: int = 0

    def __post_init__(self) -> None:
        def check_int(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise ValueError(f"{name} must be {bound}, got {value!r}")

        def check_rate(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")

        check_int("n", 1)
        check_int("size", 32, 4096)
        check_int("seed", 0)
        check_int("jpeg_quality", 1, 95)
        check_int("workers", 0)
        for name in ("atypical_nevus_rate", "featureless_melanoma_rate", "feature_overlap",
                     "multi_image_lesion_rate"):  # fmt: skip
            check_rate(name)
        if not isinstance(self.nuisance_rate, int | float) or not 0.0 <= self.nuisance_rate <= 10.0:
            raise ValueError(f"nuisance_rate must be a number between 0 and 10, got {self.nuisance_rate!r}")
        _check_weights("fitzpatrick_mix", self.fitzpatrick_mix, 6)
        if self.class_priors is not None:
            if not isinstance(self.class_priors, dict):
                raise ValueError(f"class_priors must be a dict of class code -> weight, got {self.class_priors!r}")
            unknown = sorted(set(self.class_priors) - set(CLASSES))
            missing = [c for c in CLASSES if c not in self.class_priors]
            if unknown or missing:
                raise ValueError(
                    f"class_priors must have exactly the keys {', '.join(CLASSES)} (0 is allowed); "
                    f"unknown: {unknown}, missing: {missing}"
                )
            _check_weights("class_priors", [self.class_priors[c] for c in CLASSES], len(CLASSES))
        if isinstance(self.dermoscopes, str) or not isinstance(self.dermoscopes, Sequence) or not self.dermoscopes:
            raise ValueError(f"dermoscopes must be a non-empty tuple of profile names, got {self.dermoscopes!r}")
        for name in self.dermoscopes:
            if name not in DERMOSCOPES:
                raise ValueError(f"dermoscopes: unknown profile {name!r}; known profiles: {', '.join(DERMOSCOPES)}")
        object.__setattr__(self, "dermoscopes", tuple(self.dermoscopes))
        object.__setattr__(self, "fitzpatrick_mix", tuple(float(p) for p in self.fitzpatrick_mix))

    @property
    def priors(self) -> np.ndarray:
        """Class probabilities per lesion in ``CLASSES`` order, summing to 1."""
        source = HAM10000_PRIORS if self.class_priors is None else self.class_priors
        p = np.array([float(source[c]) for c in CLASSES])
        return p / p.sum()

    @property
    def render_size(self) -> int:
        """The side the image is drawn at before the final resize."""
        return max(self.size, MIN_RENDER)


def _check_weights(name: str, values: Sequence[float], length: int) -> None:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {length} numbers, got {values!r}") from None
    if arr.shape != (length,):
        raise ValueError(f"{name} must have {length} values, got {len(arr) if arr.ndim else arr!r}: {values!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and non-negative, got {values!r}")
    if arr.sum() <= 0:
        raise ValueError(f"{name} must not be all zero (it is normalised to sum to 1), got {values!r}")
