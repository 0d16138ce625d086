"""Synthetic dermoscopy: the embedded default dataset, written in the ISIC 2018 Task 3 layout.

No real dermoscopy can be downloaded on our machines, so every command and every figure (melanoma
sensitivity, fairness gaps, drift, heat-map quality) runs on images made here. They are built to
behave like dermoscopy, not like coloured circles:

* Skin by Fitzpatrick type I-VI (pinkish beige to dark brown) with mottling, furrows and grain.
  Lesion contrast falls with skin type (V-VI keep 58-68 % of it), so a model trained on this
  set, which is skewed to types I-III like public collections, loses melanoma sensitivity on V-VI.
* Lesions built from the dermoscopic features that tell the classes apart, with overlapping
  distributions: asymmetry, border irregularity, colour count, diameter, pigment network,
  dots/globules, streaks, blue-white veil and regression for melanocytic lesions; arborizing
  vessels, blue-grey ovoid nests and ulceration for BCC; strawberry background, scale and dotted
  vessels for AKIEC; waxy brown, milia-like cysts, comedo-like openings and fissures for BKL; a
  central white patch in a delicate brown ring for DF; red-purple lacunae for VASC.
* Nevi and melanomas share one continuous latent, ``malignancy``, that drives the melanoma
  features. Nevi sit low and melanomas high, but ``atypical_nevus_rate`` of nevi are drawn most of
  the way toward melanoma and ``featureless_melanoma_rate`` of melanomas only part of the way from
  nevus, and ``feature_overlap`` adds per-feature noise, so the task is not trivially separable.
* Nuisances a model must ignore: hair, ruler ticks, marker ink, gel bubbles, dark vignette
  corners, blur, and exposure / colour cast of three dermoscope profiles; then JPEG compression.

Ground truth stays honest: the class decides the lesion, never a nuisance alone. Like real
collections, a few nuisances correlate with the class, so shortcut audits have something to find
(all scaled by ``nuisance_rate``):

* ink marks: 25 % of images of lesions referred for biopsy (MEL, BCC, AKIEC) against 5 % of benign ones;
* ruler: 20 % of melanoma images against 10 % of the others (suspicious lesions get measured);
* hair: more on men and on the scalp and limbs (sex and site correlate with class, as in HAM10000);
* age, sex and body site follow per-class distributions shaped like HAM10000's;
* diameter: melanomas are larger on average (median 8.5 mm against 6.0 mm for nevi), with wide overlap.

Fitzpatrick type and dermoscope profile are drawn independently of the class.

Determinism: image ``i`` depends only on ``(seed, i)`` (and the config knobs); the images of one
lesion share everything drawn from ``(seed, lesion number)``: class, patient metadata, lesion shape
and structures. Which lesion an image belongs to depends on ``seed`` and ``multi_image_lesion_rate``
only, never on ``n``. The same config writes byte-identical files whatever the number of workers.

See ``docs/synthetic.md`` for every knob, feature and nuisance.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermascan.data._draw import Layer, bezier, blur, ridge, smooth_noise, smoothstep, warp_affine
from dermascan.taxonomy import CLASSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DERMOSCOPES",
    "METADATA_COLUMNS",
    "NUISANCES",
    "DermoscopeProfile",
    "SynthConfig",
    "describe_image",
    "generate_dataset",
    "image_id",
    "image_metadata",
    "lesion_id",
    "metadata_table",
    "render_image",
]

GROUND_TRUTH_FILE = "ISIC2018_Task3_GroundTruth.csv"
METADATA_FILE = "metadata.csv"
NUISANCES: tuple[str, ...] = ("hair", "ruler", "ink", "bubbles", "vignette", "blur")
METADATA_COLUMNS: tuple[str, ...] = (
    "image_id", "lesion_id", "dx", "age", "sex", "localization", "fitzpatrick", "diameter_mm", "dermoscope",
    *NUISANCES,
)  # fmt: skip

#: HAM10000's class frequencies (10,015 images).
HAM10000_PRIORS: dict[str, float] = {
    "MEL": 0.111, "NV": 0.669, "BCC": 0.051, "AKIEC": 0.033, "BKL": 0.110, "DF": 0.011, "VASC": 0.014,
}  # fmt: skip
#: Fitzpatrick I..VI, skewed to I-III like public dermoscopy collections, with enough V-VI to audit.
DEFAULT_FITZPATRICK_MIX: tuple[float, ...] = (0.20, 0.35, 0.25, 0.10, 0.06, 0.04)

# Seed-sequence tags keep the independent random streams of one (seed, number) apart.
_TAG_LAYOUT, _TAG_LESION_META, _TAG_LESION_DRAW, _TAG_IMAGE_META, _TAG_IMAGE_DRAW = 11, 12, 13, 14, 15
_LAYOUT_BLOCK = 4096
# Small outputs are drawn at this side and downsampled, so thin structures average like a real resize.
_MIN_RENDER = 128
# Capture variation of repeated photographs of one lesion.
_ZOOM_RANGE = (0.88, 1.12)
_OFFSET_RANGE = 0.10


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
        return max(self.size, _MIN_RENDER)


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


# --------------------------------------------------------------------------------------------------
# Identifiers and the image -> lesion layout
# --------------------------------------------------------------------------------------------------


def image_id(index: int) -> str:
    """The image identifier of image ``index`` (``SYN_0000123``)."""
    return f"SYN_{index:07d}"


def lesion_id(lesion_no: int) -> str:
    """The lesion identifier of lesion number ``lesion_no`` (``SYNL_0000042``)."""
    return f"SYNL_{lesion_no:07d}"


@lru_cache(maxsize=256)
def _layout_block(seed: int, rate: float, block: int) -> np.ndarray:
    """Images per lesion for lesions ``block * 4096 ...``: 1, or 2-3 with probability ``rate``."""
    rng = np.random.default_rng([seed, _TAG_LAYOUT, block])
    u = rng.random((2, _LAYOUT_BLOCK))
    return 1 + (u[0] < rate) * (1 + (u[1] < 0.5))


def _lesion_of_image(seed: int, rate: float, index: int) -> tuple[int, int]:
    """(lesion number, view number within the lesion) of image ``index``; independent of ``n``."""
    first_image, block = 0, 0
    while True:
        counts = _layout_block(seed, rate, block)
        ends = first_image + np.cumsum(counts)
        if index < ends[-1]:
            k = int(np.searchsorted(ends, index, side="right"))
            start = int(ends[k] - counts[k])
            return block * _LAYOUT_BLOCK + k, index - start
        first_image = int(ends[-1])
        block += 1


# --------------------------------------------------------------------------------------------------
# What is drawn per lesion and per capture (cheap: no pixels)
# --------------------------------------------------------------------------------------------------

_LOCALIZATIONS = (
    "back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "foot",
    "scalp", "neck", "hand", "ear", "genital", "acral", "unknown",
)  # fmt: skip
# Per class: weights over _LOCALIZATIONS, shaped like HAM10000 (nevi on the trunk, BCC/AKIEC on the face).
_SITE_WEIGHTS = {
    "MEL": (24, 20, 9, 14, 5, 10, 7, 3, 2, 3, 1, 1, 0.3, 0.5, 1),
    "NV": (24, 20, 16, 9, 12, 3, 4, 3, 1, 1.5, 1, 0.5, 0.5, 0.5, 4),
    "BCC": (22, 6, 3, 8, 3, 30, 9, 0.5, 3, 6, 1, 3, 0.1, 0.1, 4),
    "AKIEC": (6, 12, 1, 16, 1, 42, 4, 0.5, 5, 3, 6, 2, 0.1, 0.1, 2),
    "BKL": (18, 12, 6, 12, 5, 26, 10, 0.5, 3, 3, 2, 1, 0.2, 0.2, 2),
    "DF": (3, 70, 1, 16, 2, 1, 2, 1, 0.2, 0.2, 1, 0.1, 0.1, 0.1, 2),
    "VASC": (10, 20, 12, 10, 12, 10, 8, 3, 3, 4, 3, 2, 1, 1, 2),
}
# (mean age, sd, share of men, median diameter in mm) per class, after HAM10000.
_PATIENT = {
    "MEL": (61.0, 14.0, 0.58, 8.5),
    "NV": (43.0, 16.0, 0.50, 6.0),
    "BCC": (66.0, 12.0, 0.62, 7.5),
    "AKIEC": (67.0, 11.0, 0.68, 7.5),
    "BKL": (59.0, 15.0, 0.55, 8.5),
    "DF": (52.0, 15.0, 0.45, 5.5),
    "VASC": (50.0, 20.0, 0.50, 5.0),
}
_BIOPSY_REFERRED = frozenset({"MEL", "BCC", "AKIEC"})


@dataclass(frozen=True)
class _Lesion:
    """Everything shared by the images of one lesion that is cheap to draw."""

    number: int
    code: str
    malignancy: float  # 0 = textbook benign nevus ... 1 = textbook melanoma (NV and MEL only)
    subtype: str  # typical, atypical / dermal (NV), featureless (MEL), pigmented (look-alikes), lentigo (BKL)
    age: float
    sex: str
    localization: str
    fitzpatrick: int
    diameter_mm: float
    fov_mm: float  # field of view of a capture at zoom 1


@lru_cache(maxsize=4096)
def _draw_lesion(config_key: tuple, lesion_no: int) -> _Lesion:
    seed, priors, fitz_mix, atypical_rate, featureless_rate, overlap = config_key
    rng = np.random.default_rng([seed, _TAG_LESION_META, lesion_no])
    code = CLASSES[int(rng.choice(len(CLASSES), p=np.asarray(priors)))]
    malignancy, subtype = 0.0, "typical"
    u = rng.random()
    if code == "NV":
        if u < atypical_rate:
            malignancy, subtype = rng.uniform(0.40, 0.62), "atypical"
        else:
            malignancy = rng.beta(2.0, 9.0)
    elif code == "MEL":
        if u < featureless_rate:
            malignancy, subtype = rng.uniform(0.45, 0.65), "featureless"
        else:
            malignancy = rng.beta(12.0, 2.0)
    mean_age, sd_age, p_male, median_d = _PATIENT[code]
    age = float(np.clip(5 * round(rng.normal(mean_age, sd_age) / 5), 5, 85))
    sex = "male" if rng.random() < p_male else "female"
    w = np.asarray(_SITE_WEIGHTS[code], dtype=float)
    localization = _LOCALIZATIONS[int(rng.choice(len(w), p=w / w.sum()))]
    fitz = 1 + int(rng.choice(6, p=np.asarray(fitz_mix)))
    # Melanocytic lesions grow with malignancy; the spread keeps large nevi and small melanomas.
    log_d = math.log(median_d) + rng.normal(0.0, 0.30)
    if code in ("NV", "MEL"):
        log_d += 0.55 * (malignancy - (0.75 if code == "MEL" else 0.2))
    diameter = float(np.clip(math.exp(log_d), 2.0, 16.0))
    fov = float(max(rng.uniform(15.0, 20.0), diameter * 1.05))
    v = rng.random()
    if code not in ("NV", "MEL") and v < 0.10 + 0.30 * overlap:
        # Pigmented look-alikes (pigmented BCC/AK, dark keratosis, pigmented DF, thrombosed angioma).
        subtype = "pigmented"
    elif code == "BKL" and v > 0.7:
        subtype = "lentigo"  # solar lentigo: flat light brown, a nevus look-alike
    elif code == "NV" and subtype == "typical" and malignancy < 0.4 and v < 0.12:
        subtype = "dermal"  # dermal nevus: pink, little pigment, comma vessels: a BCC look-alike
    return _Lesion(lesion_no, code, float(malignancy), subtype, age, sex, localization, fitz,
                   round(diameter, 1), fov)  # fmt: skip


def _config_key(config: SynthConfig) -> tuple:
    return (
        config.seed,
        tuple(float(p) for p in config.priors),
        tuple(np.asarray(config.fitzpatrick_mix) / sum(config.fitzpatrick_mix)),
        config.atypical_nevus_rate,
        config.featureless_melanoma_rate,
        config.feature_overlap,
    )


@dataclass(frozen=True)
class _Capture:
    """One photograph of a lesion: framing, device and nuisances (cheap to draw)."""

    index: int
    view: int
    dermoscope: str
    rotation: float  # radians
    zoom: float
    offset: tuple[float, float]  # lesion centre offset, in image sides
    exposure: float
    flags: dict[str, int] = field(default_factory=dict)


def _capture(config: SynthConfig, index: int, lesion: _Lesion, view: int) -> _Capture:
    rng = np.random.default_rng([config.seed, _TAG_IMAGE_META, index])
    device = DERMOSCOPES[config.dermoscopes[int(rng.integers(len(config.dermoscopes)))]]
    rotation = float(rng.uniform(0.0, 2.0 * math.pi))
    zoom = float(rng.uniform(*_ZOOM_RANGE))
    offset = (float(rng.uniform(-_OFFSET_RANGE, _OFFSET_RANGE)), float(rng.uniform(-_OFFSET_RANGE, _OFFSET_RANGE)))
    exposure = float(rng.uniform(0.93, 1.07))
    s = config.nuisance_rate
    hair_rate = 0.40 * (1.3 if lesion.sex == "male" else 0.75)
    hair_rate *= {"scalp": 2.0, "lower extremity": 1.3, "upper extremity": 1.3, "face": 0.7}.get(
        lesion.localization, 1.0
    )
    rates = {
        "hair": hair_rate,
        "ruler": 0.20 if lesion.code == "MEL" else 0.10,
        "ink": 0.25 if lesion.code in _BIOPSY_REFERRED else 0.05,
        "bubbles": device.bubble_rate,
        "vignette": device.vignette_rate,
        "blur": device.blur_rate,
    }
    u = rng.random(len(NUISANCES))
    flags = {name: int(u[k] < min(1.0, s * rates[name])) for k, name in enumerate(NUISANCES)}
    return _Capture(index, view, device.name, rotation, zoom, offset, exposure, flags)


def _plan(config: SynthConfig, index: int) -> tuple[_Lesion, _Capture]:
    if not 0 <= index < config.n:
        raise IndexError(f"image index {index} is outside 0..{config.n - 1}")
    lesion_no, view = _lesion_of_image(config.seed, config.multi_image_lesion_rate, index)
    lesion = _draw_lesion(_config_key(config), lesion_no)
    return lesion, _capture(config, index, lesion, view)


def _row(lesion: _Lesion, cap: _Capture) -> dict[str, Any]:
    return {
        "image_id": image_id(cap.index),
        "lesion_id": lesion_id(lesion.number),
        "dx": lesion.code.lower(),
        "age": lesion.age,
        "sex": lesion.sex,
        "localization": lesion.localization,
        "fitzpatrick": lesion.fitzpatrick,
        "diameter_mm": lesion.diameter_mm,
        "dermoscope": cap.dermoscope,
        **cap.flags,
    }


def image_metadata(config: SynthConfig, index: int) -> dict[str, Any]:
    """The ``metadata.csv`` row of image ``index`` without drawing it (microseconds).

    Raises:
        IndexError: ``index`` is outside ``0 .. n-1``.
    """
    return _row(*_plan(config, index))


def describe_image(config: SynthConfig, index: int) -> dict[str, Any]:
    """The metadata row plus the hidden generator truth (for error analysis and docs, never written).

    Adds ``malignancy`` (the melanocytic latent, 0 for other classes), ``subtype`` (``typical``;
    ``atypical`` or ``dermal`` nevus; ``featureless`` melanoma; ``pigmented`` look-alike of a
    non-melanocytic class; ``lentigo`` keratosis), ``view`` (capture number of the lesion),
    ``rotation_deg`` and ``zoom``.
    """
    lesion, cap = _plan(config, index)
    return {
        **_row(lesion, cap),
        "malignancy": lesion.malignancy,
        "subtype": lesion.subtype,
        "view": cap.view,
        "rotation_deg": math.degrees(cap.rotation),
        "zoom": cap.zoom,
    }


def metadata_table(config: SynthConfig) -> pd.DataFrame:
    """The whole ``metadata.csv`` of a config without drawing a pixel (about 20k rows/s)."""
    import pandas as pd

    return pd.DataFrame([image_metadata(config, i) for i in range(config.n)], columns=list(METADATA_COLUMNS))


# --------------------------------------------------------------------------------------------------
# Painting a lesion on its own canvas (lesion frame: shared by every capture of the lesion)
# --------------------------------------------------------------------------------------------------

# Transmittance (what fraction of each channel a full layer lets through) of pigments, as in a
# Beer-Lambert absorption model: melanin absorbs blue most, haemoglobin green and blue.
_T_LIGHT_BROWN = np.array([0.80, 0.60, 0.42], dtype=np.float32)
_T_DARK_BROWN = np.array([0.42, 0.25, 0.15], dtype=np.float32)
_T_BLACK = np.array([0.14, 0.11, 0.11], dtype=np.float32)
_T_RED = np.array([0.88, 0.32, 0.38], dtype=np.float32)
_T_PURPLE = np.array([0.50, 0.16, 0.38], dtype=np.float32)
_T_DARK_RED = np.array([0.32, 0.07, 0.12], dtype=np.float32)
_T_PINK = np.array([0.97, 0.72, 0.76], dtype=np.float32)
_T_CRUST = np.array([0.50, 0.22, 0.12], dtype=np.float32)
_T_WAXY = np.array([0.76, 0.61, 0.48], dtype=np.float32)
# Scattering colours (layers that hide what is under them): dermal melanin seen through collagen
# looks blue-grey (Tyndall effect), fibrosis looks white.
_C_BLUE_GREY = np.array([0.42, 0.47, 0.58], dtype=np.float32)
_C_VEIL = np.array([0.60, 0.65, 0.76], dtype=np.float32)
_C_WHITE = np.array([0.95, 0.92, 0.91], dtype=np.float32)
_C_SCALE = np.array([0.96, 0.93, 0.80], dtype=np.float32)
_C_MILIA = np.array([0.97, 0.95, 0.84], dtype=np.float32)
_C_TRANSLUCENT = np.array([0.94, 0.80, 0.80], dtype=np.float32)


class _Canvas:
    """A lesion drawn in its own frame: ``out = skin * mul + add`` per pixel, built in paint order.

    Absorbing layers multiply both terms; scattering layers are composited over both. The d-field
    (normalised distance to the border: < 1 inside) becomes the segmentation mask.
    """

    def __init__(self, rng: np.random.Generator, radius_px: float, ppm: float, half: int) -> None:
        self.rng = rng
        self.ppm = ppm  # pixels per millimetre
        self.radius = radius_px
        self.side = 2 * half + 1
        self.half = half
        coords = np.arange(-half, half + 1, dtype=np.float32)
        self.x = coords[None, :].repeat(self.side, 0)
        self.y = coords[:, None].repeat(self.side, 1)
        self.mul = np.ones((self.side, self.side, 3), dtype=np.float32)
        self.add = np.zeros((self.side, self.side, 3), dtype=np.float32)
        self.d = np.full((self.side, self.side), 10.0, dtype=np.float32)
        self.alpha = np.zeros((self.side, self.side), dtype=np.float32)  # soft lesion coverage, 0..1
        self.softness = 0.1

    # -- geometry --------------------------------------------------------------------------------

    def shape(self, elongation: float, low: float, high: float, lumpy: float, softness: float) -> None:
        """Set the outline: an ellipse with random Fourier harmonics on its radius plus lumpy 2-D noise.

        Args:
            elongation: axis ratio (>= 1); asymmetry of shape.
            low: amplitude of harmonics 1-3 (lopsided outlines); asymmetry.
            high: amplitude of harmonics 4-16 (notched, scalloped borders); border irregularity.
            lumpy: amplitude of smooth 2-D noise on the distance field (non star-shaped borders).
            softness: width of the edge fade, in units of the radius (0.03 sharp ... 0.3 fuzzy).
        """
        rng = self.rng
        theta_table = np.linspace(0.0, 2.0 * np.pi, 720, endpoint=False)
        radius = np.ones_like(theta_table)
        for k in range(1, 17):
            amp = low / k if k <= 3 else high * 4.0 / k
            radius += amp * rng.normal(0.0, 1.0) * np.cos(k * theta_table + rng.uniform(0, 2 * np.pi))
        radius = np.clip(radius, 0.45, None)
        radius /= np.sqrt(np.mean(radius**2))  # keep the area (and so the diameter) as drawn
        sq = math.sqrt(elongation)
        axis_angle = rng.uniform(0, np.pi)
        ca, sa = math.cos(axis_angle), math.sin(axis_angle)
        u = (self.x * ca + self.y * sa) / sq
        v = (-self.x * sa + self.y * ca) * sq
        rho = np.hypot(u, v)
        idx = ((np.arctan2(v, u) + np.pi) * (720 / (2 * np.pi))).astype(np.int32) % 720
        d = rho / (self.radius * radius[idx].astype(np.float32))
        d += lumpy * smooth_noise(rng, self.side, self.side, self.radius * 0.45)
        self.d = d.astype(np.float32)
        self.softness = softness
        self.alpha = smoothstep(1.0 + softness * 0.5, 1.0 - softness, self.d)

    def noise(self, cell_mm: float) -> np.ndarray:
        """Smooth noise over the canvas with blobs ``cell_mm`` wide."""
        return smooth_noise(self.rng, self.side, self.side, cell_mm * self.ppm)

    def region(
        self,
        coverage: float,
        cell_mm: float,
        centre: tuple[float, float] | None = None,
        spread: float = 0.6,
        edge: float = 0.7,
    ) -> np.ndarray:
        """A soft random patch inside the lesion covering about ``coverage`` of it.

        Args:
            coverage: rough share of the lesion covered.
            cell_mm: size of the patch's lobes.
            centre: optional focus (in radius units) the patch prefers, for eccentric structures.
            spread: how far from ``centre`` the patch reaches (radius units).
            edge: softness of the patch border in noise units.
        """
        n = self.noise(cell_mm)
        if centre is not None:
            dist = np.hypot(self.x / self.radius - centre[0], self.y / self.radius - centre[1])
            n = n - 2.0 * np.square(dist / spread) + 1.0
        thr = float(np.quantile(n[self.d < 1.0], 1.0 - coverage)) if np.any(self.d < 1.0) else 0.0
        return smoothstep(thr - edge, thr + edge, n) * self.alpha

    def points_inside(self, count: int, dmin: float = 0.0, dmax: float = 0.9) -> np.ndarray:
        """``count`` random canvas points (x, y) with normalised border distance in [dmin, dmax]."""
        inside = np.flatnonzero(((self.d >= dmin) & (self.d <= dmax)).ravel())
        if inside.size == 0 or count <= 0:
            return np.zeros((0, 2))
        pick = self.rng.choice(inside, size=count)
        jitter = self.rng.uniform(-0.5, 0.5, size=(count, 2))
        return np.stack([pick % self.side, pick // self.side], axis=1) + jitter

    def layer(self) -> Layer:
        """An empty rasterisation layer the size of the canvas."""
        return Layer(self.side, self.side)

    # -- paint -----------------------------------------------------------------------------------

    def absorb(self, weight: np.ndarray | float, transmittance: np.ndarray) -> None:
        """Add an absorbing pigment layer; ``weight`` 1 lets ``transmittance`` through, 2 its square."""
        w = np.asarray(weight, dtype=np.float32)
        factor = np.exp(w[..., None] * np.log(transmittance))  # (H, W, 3)
        self.mul *= factor
        self.add *= factor

    def scatter(self, weight: np.ndarray | float, colour: np.ndarray) -> None:
        """Composite an opaque-ish layer of ``colour`` with opacity ``weight`` over what is there."""
        w = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)[..., None]
        self.mul *= 1.0 - w
        self.add *= 1.0 - w
        self.add += w * colour

    def pixels(self, mm: float) -> float:
        """Millimetres to canvas pixels."""
        return mm * self.ppm


def _feature(rng: np.random.Generator, malignancy: float, overlap: float) -> float:
    """A noisy read-out of the malignancy latent: one per feature, so features disagree at times."""
    return float(np.clip(malignancy + rng.normal(0.0, 0.35 * overlap), 0.0, 1.0))


def _paint_melanocytic(cv: _Canvas, lesion: _Lesion, overlap: float) -> None:
    rng = cv.rng
    m = lesion.malignancy
    asym, border, colours, struct = (_feature(rng, m, overlap) for _ in range(4))
    cv.shape(
        elongation=1.0 + abs(rng.normal(0.05 + 0.35 * asym, 0.12)),
        low=0.03 + 0.22 * asym,
        high=0.005 + 0.05 * border,
        lumpy=0.02 + 0.14 * border,
        softness=float(np.clip(rng.normal(0.36 - 0.24 * border, 0.06), 0.06, 0.5)),
    )
    a, d = cv.alpha, cv.d
    # Pigment density: a dome, uneven by colour heterogeneity, with an off-centre blotch for asymmetry.
    base = rng.uniform(0.55, 0.95)
    dome = 1.0 - rng.uniform(0.1, 0.45) * np.square(np.minimum(d, 1.0))
    density = base * dome + (0.08 + 0.45 * colours) * cv.noise(rng.uniform(1.0, 2.5))
    density *= 1.0 + 0.12 * cv.noise(0.15)  # fine granularity: real pigment is never flat
    if asym > 0.25:
        ang = rng.uniform(0, 2 * np.pi)
        r_off = 0.25 + 0.4 * asym
        cx, cy = r_off * math.cos(ang) * cv.radius, r_off * math.sin(ang) * cv.radius
        blot = np.exp(-(np.square(cv.x - cx) + np.square(cv.y - cy)) / (2 * (0.35 * cv.radius) ** 2))
        density = density + rng.uniform(0.3, 0.8) * asym * blot
    density = np.maximum(density, 0.0) * a
    if lesion.subtype == "dermal":
        # Dermal (Unna/Miescher) nevus: little pigment, pink, a few comma vessels: looks like BCC at times.
        cv.absorb(a * 0.8, _T_PINK)
        cv.absorb(density * 0.35, _T_LIGHT_BROWN)
        _vessels(cv, "comma", rng.integers(3, 9))
        return
    cv.absorb(np.minimum(density, 1.1), _T_LIGHT_BROWN)
    n_colours = 1 + int(5.5 * colours**1.5 + rng.uniform(0, 1.0))
    extras = ["dark"]
    extras += list(rng.permutation(["black", "blue", "red", "white"])) if n_colours > 2 else []
    chosen = set(extras[: n_colours - 1])
    if "dark" in chosen:
        cv.absorb(np.clip(density - 0.55, 0.0, 0.8) * 1.4, _T_DARK_BROWN)
    if "black" in chosen:
        cv.absorb(smoothstep(0.95, 1.35, density) * 1.2 * cv.region(0.25, 1.2), _T_BLACK)
    # Pigment network: regular, thin and fading at the edge in nevi; thick, broken and uneven in melanoma.
    if rng.random() < (0.75 if struct < 0.5 else 0.6):
        cell = rng.uniform(0.2, 0.3) * (1.0 + 0.3 * struct)
        width = 0.16 + 0.22 * struct * np.abs(1.0 + 0.6 * cv.noise(2.0))
        # Two overlaid labyrinths close each other's open ends into a mesh of holes.
        net = np.maximum(ridge(cv.noise(cell), width), ridge(cv.noise(cell * 1.3), width))
        keep = smoothstep(-0.6, 0.2, cv.noise(1.5) + 1.2 - 1.6 * struct) if struct > 0.4 else 1.0
        fade = smoothstep(1.05, 0.55, d) if struct < 0.5 else smoothstep(1.02, 0.9, d)
        strength = rng.uniform(0.35, 0.6) * (1.0 + 0.6 * struct)
        cv.absorb(net * keep * fade * a * strength, _T_DARK_BROWN)
    # Dots and globules: even and central/peripheral in nevi, uneven and clustered in melanoma.
    if rng.random() < 0.45 + 0.25 * struct:
        _globules(cv, struct)
    if rng.random() < 0.02 + 0.7 * smoothstep(0.5, 0.8, np.float32(struct)):
        _streaks(cv, struct)
    if "blue" in chosen or rng.random() < 0.9 * smoothstep(0.55, 0.8, np.float32(struct)):
        ecc = rng.uniform(-0.4, 0.4, size=2)
        veil = cv.region(rng.uniform(0.12, 0.35), 1.5, centre=(ecc[0], ecc[1]), spread=0.7, edge=1.2)
        veil *= 1.0 + 0.25 * cv.noise(0.3)  # ground-glass, not a flat patch
        cv.scatter(veil * rng.uniform(0.45, 0.7), _C_VEIL if rng.random() < 0.6 else _C_BLUE_GREY)
    if "white" in chosen or rng.random() < 0.02 + 0.5 * smoothstep(0.55, 0.8, np.float32(struct)):
        _regression(cv)
    if "red" in chosen:
        cv.absorb(blur(cv.region(0.2, 1.5, edge=1.2), cv.pixels(0.2)) * 0.5, _T_RED)
        if rng.random() < 0.5:
            _vessels(cv, "dotted", int(rng.integers(6, 20)))


def _globules(cv: _Canvas, struct: float) -> None:
    rng = cv.rng
    count = int(rng.integers(6, 18) + 25 * struct * rng.random())
    if struct < 0.45 and rng.random() < 0.5:
        # Peripheral rim of globules (a growing nevus) or a regular central cluster.
        ang = rng.uniform(0, 2 * np.pi, count)
        rr = rng.uniform(0.75, 0.92, count) if rng.random() < 0.5 else rng.uniform(0.0, 0.55, count)
        pts = np.stack([np.cos(ang) * rr, np.sin(ang) * rr], 1) * cv.radius + cv.half
        sizes = np.full(count, rng.uniform(0.12, 0.2))
    else:
        pts = cv.points_inside(count, 0.0, 0.8 + 0.35 * struct)
        if struct > 0.45:
            # Cluster toward one side: asymmetric distribution of dots.
            focus = cv.points_inside(1, 0.3, 0.9)
            pts = pts * (1 - 0.5 * struct) + focus * 0.5 * struct if len(focus) else pts
        sizes = rng.uniform(0.06, 0.12 + 0.2 * struct, len(pts))
    layer = cv.layer()
    for (x, y), s in zip(pts, sizes, strict=True):
        r = cv.pixels(float(s))
        layer.ellipse(x, y, r, r * rng.uniform(0.75, 1.0), value=rng.uniform(0.6, 1.0))
    colour = _T_BLACK if struct > 0.5 and rng.random() < 0.5 else _T_DARK_BROWN
    cv.absorb(layer.array(0.6) * 1.3, colour)


def _streaks(cv: _Canvas, struct: float) -> None:
    """Radial streaks / pseudopods at the border, over a sector (irregular) or all round (Spitz/Reed)."""
    rng = cv.rng
    count = int(rng.integers(5, 16))
    centre = rng.uniform(0, 2 * np.pi)
    width_sector = rng.uniform(0.6, 2.2) if struct > 0.5 else 2 * np.pi
    layer = cv.layer()
    steps = np.linspace(0.3, 1.8, 40) * cv.radius
    for _ in range(count):
        ang = centre + rng.uniform(-width_sector / 2, width_sector / 2)
        ray = np.array([math.cos(ang), math.sin(ang)])
        normal = np.array([-ray[1], ray[0]])
        # Walk the ray to where the border lies in this direction.
        xs = (cv.half + ray[0] * steps).astype(int).clip(0, cv.side - 1)
        ys = (cv.half + ray[1] * steps).astype(int).clip(0, cv.side - 1)
        outside = np.flatnonzero(cv.d[ys, xs] > 1.0)
        r_border = steps[outside[0]] if outside.size else steps[-1]
        r0, r1 = r_border * 0.78, r_border * rng.uniform(1.02, 1.12)
        bend = normal * rng.normal(0, 0.05) * r_border
        w0, w1 = cv.pixels(rng.uniform(0.12, 0.22)), cv.pixels(rng.uniform(0.03, 0.08))
        tip = ray * r1 + bend + cv.half
        base = ray * r0 + cv.half
        # A tapered wedge from inside the lesion to just past its border.
        layer.polygon([tuple(base + normal * w0), tuple(tip + normal * w1), tuple(tip - normal * w1),
                       tuple(base - normal * w0)], value=rng.uniform(0.6, 0.95))  # fmt: skip
        if rng.random() < 0.35:  # pseudopod: a small bulb at the tip
            r = cv.pixels(rng.uniform(0.07, 0.12))
            layer.ellipse(tip[0], tip[1], r, r, value=0.85)
    cv.absorb(layer.array(0.6) * 1.3, _T_DARK_BROWN)


def _regression(cv: _Canvas) -> None:
    """White scar-like area with blue-grey peppering."""
    rng = cv.rng
    region = blur(cv.region(rng.uniform(0.12, 0.3), 1.2, edge=1.0), cv.pixels(0.1))
    cv.scatter(region * rng.uniform(0.3, 0.55) * (1.0 + 0.2 * cv.noise(0.2)), _C_WHITE)
    pts = cv.points_inside(int(rng.integers(20, 60)), 0.0, 0.95)
    layer = cv.layer()
    for x, y in pts:
        layer.ellipse(x, y, cv.pixels(0.04), cv.pixels(0.04), value=0.8)
    pepper = layer.array(0.4) * smoothstep(0.05, 0.3, region)
    cv.scatter(pepper * 0.8, _C_BLUE_GREY)


def _vessels(cv: _Canvas, kind: str, count: int) -> None:
    """Dotted/glomerular (AKIEC), comma (dermal nevus) or arborizing (BCC) vessels."""
    rng = cv.rng
    layer = cv.layer()
    if kind in ("dotted", "glomerular"):
        pts = cv.points_inside(count, 0.0, 0.9)
        for x, y in pts:
            r = cv.pixels(rng.uniform(0.04, 0.08 if kind == "dotted" else 0.13))
            if kind == "glomerular":
                layer.ring(x, y, r, r * 0.8, width=1, value=0.9)
            layer.ellipse(x, y, r * 0.6, r * 0.6, value=0.9)
        cv.absorb(layer.array(0.4) * 1.5, _T_RED)
        return
    if kind == "comma":
        for x, y in cv.points_inside(count, 0.0, 0.8):
            ang = rng.uniform(0, 2 * np.pi)
            length = cv.pixels(rng.uniform(0.3, 0.6))
            p = np.array([[x, y], [x + length * math.cos(ang + 0.5), y + length * math.sin(ang + 0.5)],
                          [x + length * math.cos(ang), y + length * math.sin(ang)]])  # fmt: skip
            layer.line(bezier(p, 6), width=cv.pixels(0.07), value=0.9)
        cv.absorb(layer.array(0.4) * 1.3, _T_RED)
        return

    # Arborizing: thick trunks that branch into ever thinner, sharply focused red vessels.
    def branch(x: float, y: float, ang: float, length: float, width: float, depth: int) -> None:
        bend = rng.normal(0, 0.35)
        x2, y2 = x + length * math.cos(ang + bend), y + length * math.sin(ang + bend)
        mid = (x + (x2 - x) * 0.5 + rng.normal(0, length * 0.15), y + (y2 - y) * 0.5 + rng.normal(0, length * 0.15))
        layer.line(bezier(np.array([[x, y], mid, [x2, y2]]), 6), width=width, value=1.0)
        if depth > 0:
            for turn in (-1, 1):
                if rng.random() < 0.85:
                    branch(x2, y2, ang + bend + turn * rng.uniform(0.3, 0.9), length * rng.uniform(0.55, 0.8),
                           max(width * 0.65, 0.6), depth - 1)  # fmt: skip

    for x, y in cv.points_inside(count, 0.1, 0.8):
        to_centre = math.atan2(cv.half - y, cv.half - x) + rng.normal(0, 1.2)
        branch(x, y, to_centre, cv.radius * rng.uniform(0.25, 0.45), cv.pixels(rng.uniform(0.1, 0.17)), 3)
    cv.absorb(layer.array(0.35) * 1.6, _T_RED)


def _paint_bcc(cv: _Canvas, lesion: _Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.2, 0.15)), rng.uniform(0.05, 0.2), rng.uniform(0.01, 0.04),
             rng.uniform(0.04, 0.12), rng.uniform(0.12, 0.3))  # fmt: skip
    a = cv.alpha
    cv.scatter(a * rng.uniform(0.15, 0.35), _C_TRANSLUCENT)  # translucent, pearly
    cv.absorb(a * rng.uniform(0.4, 0.9), _T_PINK)
    if rng.random() < 0.8 * keep:
        _vessels(cv, "arborizing", int(rng.integers(2, 5)))
    if rng.random() < 0.5 * keep or pigmented:
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(2, 9)), 0.0, 0.85):
            rx = cv.pixels(rng.uniform(0.25, 0.7))
            layer.ellipse(x, y, rx, rx * rng.uniform(0.5, 0.9), value=rng.uniform(0.45, 0.8))
        nests = layer.array(cv.pixels(0.15)) * (1.0 + 0.3 * cv.noise(0.15))  # ovoid, granular, soft-edged
        cv.scatter(nests, _C_BLUE_GREY)
    if pigmented:  # pigmented BCC: brown-grey blotches and dots, a melanoma look-alike
        cv.absorb(blur(cv.region(0.15, 1.5, edge=1.0), cv.pixels(0.1)) * 0.9, _T_DARK_BROWN)
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(5, 20)), 0.0, 0.85):
            r = cv.pixels(rng.uniform(0.08, 0.2))
            layer.ellipse(x, y, r, r, value=rng.uniform(0.6, 0.9))
        cv.scatter(layer.array(0.6), _C_BLUE_GREY)
    if rng.random() < 0.5:  # shiny white strands
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(3, 8)), 0.0, 0.8):
            ang, ln = rng.uniform(0, np.pi), cv.pixels(rng.uniform(0.4, 1.0))
            layer.line([(x, y), (x + ln * math.cos(ang), y + ln * math.sin(ang))], cv.pixels(0.06), 0.8)
        cv.scatter(layer.array(0.5) * 0.7, _C_WHITE)
    if rng.random() < 0.35 * keep:  # ulceration
        ulcer = cv.region(rng.uniform(0.05, 0.15), 0.8, centre=tuple(rng.uniform(-0.3, 0.3, 2)), spread=0.4)
        cv.absorb(ulcer * 1.4, _T_CRUST)


def _paint_akiec(cv: _Canvas, lesion: _Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.25, 0.2)), rng.uniform(0.05, 0.2), rng.uniform(0.01, 0.04),
             rng.uniform(0.08, 0.18), rng.uniform(0.25, 0.45))  # fmt: skip
    a = cv.alpha
    # Strawberry pattern: red erythema pierced by white follicular openings.
    cv.absorb(a * rng.uniform(0.6, 1.1) * (1.0 + 0.3 * cv.noise(1.5)), _T_PINK)
    cv.absorb(a * rng.uniform(0.2, 0.5), _T_RED)
    spacing = cv.pixels(rng.uniform(0.6, 1.0))
    grid = np.arange(-cv.half, cv.half, spacing)
    gx, gy = np.meshgrid(grid, grid)
    pts = np.stack([gx.ravel(), gy.ravel()], 1) + cv.half + rng.normal(0, spacing * 0.3, (gx.size, 2))
    pts = pts[rng.random(len(pts)) < rng.uniform(0.4, 0.8)]
    layer = cv.layer()
    for x, y in pts:
        r = cv.pixels(rng.uniform(0.07, 0.14))
        layer.ellipse(x, y, r, r, value=rng.uniform(0.4, 0.8))
    cv.scatter(layer.array(cv.pixels(0.05)) * a * 0.7, _C_WHITE)
    if pigmented:
        cv.absorb(ridge(cv.noise(0.5), 0.3) * a * 0.7 + 0.3 * a, _T_LIGHT_BROWN)
    if rng.random() < 0.7 * keep:  # surface scale, white to yellow
        scale = cv.region(rng.uniform(0.15, 0.4), 1.0, edge=1.0)
        scale = blur(scale, cv.pixels(0.06)) * (1.0 + 0.35 * cv.noise(0.12))
        cv.scatter(scale * rng.uniform(0.35, 0.65), _C_SCALE)
    if rng.random() < 0.6 * keep:
        _vessels(cv, "glomerular" if rng.random() < 0.5 else "dotted", int(rng.integers(15, 50)))


def _paint_bkl(cv: _Canvas, lesion: _Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    lentigo = lesion.subtype == "lentigo"
    cv.shape(1.0 + abs(rng.normal(0.25, 0.2)), rng.uniform(0.05, 0.2),
             rng.uniform(0.03, 0.07) if lentigo else rng.uniform(0.005, 0.03),
             rng.uniform(0.05, 0.15), rng.uniform(0.03, 0.1) if not lentigo else rng.uniform(0.1, 0.2))  # fmt: skip
    a = cv.alpha
    # Waxy "stuck-on" brown, sharply demarcated.
    level = rng.uniform(0.6, 1.3) if not lentigo else rng.uniform(0.4, 0.8)
    cv.absorb(a * level * (1.0 + 0.2 * cv.noise(1.5)), _T_WAXY)
    if pigmented:  # dark, irritated keratosis: a melanoma look-alike
        cv.absorb(cv.region(0.4, 1.2) * 1.1, _T_DARK_BROWN)
        cv.absorb(cv.region(0.12, 0.8) * 0.6, _T_BLACK)
    if lentigo:
        if rng.random() < 0.5:  # fingerprint-like / faint pseudo-network
            cv.absorb(ridge(cv.noise(0.5), 0.35) * a * 0.6, _T_LIGHT_BROWN)
        return
    if rng.random() < 0.45 * keep:  # cerebriform fissures and ridges
        # Brain-like gyri and sulci: dark, soft fissures between lighter waxy ridges.
        folds = cv.noise(rng.uniform(0.8, 1.2))
        cv.absorb(blur(ridge(folds, 0.3), cv.pixels(0.05)) * a * 0.7, _T_DARK_BROWN)
        cv.scatter(smoothstep(0.6, 1.6, np.abs(folds)) * a * 0.25, _C_MILIA)
    if rng.random() < 0.6 * keep:  # milia-like cysts
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(3, 15)), 0.0, 0.85):
            r = cv.pixels(rng.uniform(0.1, 0.25))
            layer.ellipse(x, y, r, r, value=0.9)
        cv.scatter(layer.array(0.7), _C_MILIA)
    if rng.random() < 0.5 * keep:  # comedo-like openings
        layer = cv.layer()
        for x, y in cv.points_inside(int(rng.integers(3, 12)), 0.0, 0.85):
            r = cv.pixels(rng.uniform(0.12, 0.28))
            layer.ellipse(x, y, r, r * rng.uniform(0.6, 1.0), value=0.9)
        cv.absorb(layer.array(0.6) * 1.6, _T_DARK_BROWN)


def _paint_df(cv: _Canvas, lesion: _Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.15, 0.1)), rng.uniform(0.03, 0.12), rng.uniform(0.005, 0.02),
             rng.uniform(0.03, 0.08), rng.uniform(0.25, 0.4))  # fmt: skip
    a, d = cv.alpha, cv.d
    cv.absorb(a * rng.uniform(0.3, 0.6), _T_PINK)
    # Delicate peripheral network: a brown ring.
    ring = smoothstep(0.25, 0.7, d) * a
    net = 0.4 + 0.6 * ridge(cv.noise(0.45), 0.35)
    cv.absorb(ring * net * rng.uniform(0.6, 1.1) * (2.0 if pigmented else 1.0), _T_LIGHT_BROWN)
    if rng.random() < 0.85 * keep:  # central white scar-like patch
        patch = cv.region(rng.uniform(0.15, 0.35), 1.0, centre=(0.0, 0.0), spread=0.45, edge=1.5)
        patch = blur(patch, cv.pixels(0.15)) * (1.0 + 0.2 * cv.noise(0.2))
        cv.scatter(patch * rng.uniform(0.5, 0.8), _C_WHITE)


def _paint_vasc(cv: _Canvas, lesion: _Lesion, pigmented: bool, keep: float) -> None:
    rng = cv.rng
    cv.shape(1.0 + abs(rng.normal(0.15, 0.15)), rng.uniform(0.04, 0.15), rng.uniform(0.01, 0.04),
             rng.uniform(0.03, 0.1), rng.uniform(0.03, 0.08))  # fmt: skip
    a = cv.alpha
    cv.scatter(a * 0.3, _C_TRANSLUCENT)  # whitish septa between the lacunae
    cv.absorb(a * rng.uniform(0.3, 0.8), _T_RED)
    # Red-purple lacunae: well demarcated round clods packed in the lesion.
    layer_red, layer_dark = cv.layer(), cv.layer()
    dark_share = 0.6 if pigmented else rng.uniform(0.0, 0.3)
    count = int(np.clip((cv.radius / cv.pixels(0.45)) ** 2 * rng.uniform(0.8, 1.4), 6, 120))
    for x, y in cv.points_inside(count, 0.0, 0.95):
        r = cv.pixels(rng.uniform(0.25, 0.6))
        target = layer_dark if rng.random() < dark_share else layer_red
        target.ellipse(x, y, r, r * rng.uniform(0.75, 1.0), value=rng.uniform(0.7, 1.0))
    red = layer_red.array(0.7) * a
    cv.absorb(red * 1.4, _T_RED if rng.random() < 0.5 else _T_PURPLE)
    if not layer_dark.empty:
        cv.absorb(layer_dark.array(0.7) * a * 1.3, _T_DARK_RED)


_PAINTERS = {"BCC": _paint_bcc, "AKIEC": _paint_akiec, "BKL": _paint_bkl, "DF": _paint_df, "VASC": _paint_vasc}


def _paint_lesion(config: SynthConfig, lesion: _Lesion, render: int) -> _Canvas:
    rng = np.random.default_rng([config.seed, _TAG_LESION_DRAW, lesion.number])
    ppm = render / lesion.fov_mm
    radius_px = lesion.diameter_mm / 2.0 * ppm
    half = int(min(math.ceil(radius_px * 2.1) + 4, render * 1.2))
    cv = _Canvas(rng, radius_px, ppm, half)
    if lesion.code in ("NV", "MEL"):
        _paint_melanocytic(cv, lesion, config.feature_overlap)
    else:
        # Class-typical structures go missing more often as feature_overlap grows.
        keep = 1.0 - 0.3 * config.feature_overlap
        _PAINTERS[lesion.code](cv, lesion, lesion.subtype == "pigmented", keep)
    return cv


# --------------------------------------------------------------------------------------------------
# Skin, capture and nuisances (image frame)
# --------------------------------------------------------------------------------------------------

# Skin colour under a dermoscope (sRGB, 0-1) for Fitzpatrick I..VI.
_SKIN = np.array([
    [0.93, 0.78, 0.75], [0.91, 0.73, 0.66], [0.85, 0.65, 0.54],
    [0.72, 0.52, 0.39], [0.55, 0.38, 0.27], [0.38, 0.26, 0.19],
], dtype=np.float32)  # fmt: skip
# Share of lesion contrast that survives the epidermal melanin of each skin type.
_CONTRAST = (1.0, 0.97, 0.90, 0.80, 0.68, 0.58)


def _skin(rng: np.random.Generator, fitz: int, size: int, ppm: float) -> np.ndarray:
    base = _SKIN[fitz - 1] * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = base
    mottle = smooth_noise(rng, size, size, size / 4)
    redness = smooth_noise(rng, size, size, size / 6)
    # Skin furrows: a faint, fine net of lighter lines (polarised light), two scales crossing.
    furrows = ridge(smooth_noise(rng, size, size, ppm * rng.uniform(0.5, 0.8)), 0.1)
    furrows += 0.5 * ridge(smooth_noise(rng, size, size, ppm * rng.uniform(1.2, 2.0)), 0.08)
    texture = smooth_noise(rng, size, size, 2.5 * size / 224)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    lum = 1.0 + 0.03 * mottle + rng.uniform(0.025, 0.05) * furrows + 0.02 * texture + 0.012 * grain
    img *= lum[..., None]
    # Erythema only adds red (never subtracts it), or the skin turns cyan in places.
    redness = np.maximum(redness, 0.0) * rng.uniform(0.01, 0.045)
    img[..., 1] -= redness * base[1]
    img[..., 2] -= 0.8 * redness * base[2]
    return img


def _hair(rng: np.random.Generator, img: np.ndarray, size: int, scale: float) -> None:
    layer = Layer(size, size)
    count = int(rng.integers(2, 14))
    colours = []
    for _ in range(count):
        start = rng.uniform(-0.2, 1.2, 2) * size
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.4, 1.3) * size
        ctrl = np.array([start, start + length * 0.5 * np.array([math.cos(ang), math.sin(ang)]),
                         start + length * np.array([math.cos(ang + rng.normal(0, 0.5)),
                                                    math.sin(ang + rng.normal(0, 0.5))])])  # fmt: skip
        ctrl[1] += rng.normal(0, 0.12 * length, 2)
        layer.line(bezier(ctrl, 16), width=rng.uniform(0.7, 1.8) * scale, value=rng.uniform(0.7, 1.0))
        colours.append(rng.uniform(0.05, 0.3))
    cover = layer.array(0.5 * scale)[..., None]
    tone = float(np.mean(colours))
    hair_colour = np.array([tone * 1.1, tone * 0.85, tone * 0.7], dtype=np.float32)
    img *= 1.0 - cover
    img += cover * hair_colour


def _ruler(rng: np.random.Generator, img: np.ndarray, size: int, ppm: float, scale: float) -> None:
    layer = Layer(size, size)
    side = int(rng.integers(4))
    inset = rng.uniform(0.03, 0.12) * size
    step = ppm * (1.0 if rng.random() < 0.8 else 0.5)
    pos = np.arange(rng.uniform(0, step), size, step)
    for k, p in enumerate(pos):
        length = size * (0.06 if k % 5 == 0 else 0.03)
        a, b = (inset, inset + length)
        if side == 0:
            seg = [(p, a), (p, b)]
        elif side == 1:
            seg = [(p, size - a), (p, size - b)]
        elif side == 2:
            seg = [(a, p), (b, p)]
        else:
            seg = [(size - a, p), (size - b, p)]
        layer.line(seg, width=1.2 * scale, value=0.85)
    cover = layer.array(0.4 * scale)[..., None]
    img *= 1.0 - cover
    img += cover * 0.06


def _ink(rng: np.random.Generator, img: np.ndarray, size: int, centre: np.ndarray, radius: float,
         scale: float) -> None:  # fmt: skip
    layer = Layer(size, size)
    ring = radius * rng.uniform(1.2, 1.7)
    if rng.random() < 0.6:  # dots around the lesion (excision margin)
        for ang in rng.uniform(0, 2 * np.pi, int(rng.integers(2, 7))):
            c = centre + ring * np.array([math.cos(ang), math.sin(ang)])
            r = rng.uniform(1.5, 3.5) * scale
            layer.ellipse(c[0], c[1], r, r * rng.uniform(0.7, 1.0), value=rng.uniform(0.6, 0.9))
    else:  # a stroke or an arc next to it
        a0 = rng.uniform(0, 2 * np.pi)
        angs = a0 + np.linspace(0, rng.uniform(0.4, 1.6), 10)
        pts = [(float(centre[0] + ring * math.cos(t)), float(centre[1] + ring * math.sin(t))) for t in angs]
        layer.line(pts, width=rng.uniform(1.5, 3.5) * scale, value=rng.uniform(0.5, 0.85))
    cover = layer.array(0.8 * scale)[..., None]
    ink = np.array([0.40, 0.22, 0.58], dtype=np.float32) * rng.uniform(0.8, 1.1)
    img *= 1.0 - cover
    img += cover * ink


def _bubbles(rng: np.random.Generator, img: np.ndarray, size: int, scale: float) -> None:
    rim, body = Layer(size, size), Layer(size, size)
    for _ in range(int(rng.integers(1, 14))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.01, 0.07) * size
        ry = r * rng.uniform(0.7, 1.0)
        body.ellipse(x, y, r, ry, value=0.25)
        rim.ring(x, y, r, ry, width=max(1, round(scale)), value=0.9)
        rim.ellipse(x - 0.35 * r, y - 0.35 * ry, 0.15 * r + 0.5, 0.15 * ry + 0.5, value=1.0)  # glint
    cover = np.maximum(rim.array(0.5 * scale), body.array(0.6 * scale))[..., None]
    img *= 1.0 - cover
    img += cover * 0.97


def _vignette(rng: np.random.Generator, img: np.ndarray, size: int) -> None:
    c = (size - 1) / 2.0
    coords = (np.arange(size, dtype=np.float32) - c) / c
    rho = np.hypot(coords[None, :], coords[:, None])
    field_r = rng.uniform(1.02, 1.38)
    edge = rng.uniform(0.03, 0.1)
    inside = smoothstep(field_r + edge, field_r - edge, rho)
    darkness = rng.uniform(0.02, 0.15)
    falloff = 1.0 - rng.uniform(0.05, 0.2) * np.square(np.minimum(rho, field_r) / field_r)
    img *= (darkness + (1.0 - darkness) * inside * falloff)[..., None]


def _render(config: SynthConfig, lesion: _Lesion, cap: _Capture) -> tuple[np.ndarray, np.ndarray]:
    """Draw one capture at the render size: (uint8 RGB image, float32 d-field; < 1 inside the lesion)."""
    size = config.render_size
    scale = size / 224.0  # line widths and blurs are designed at 224 px
    rng = np.random.default_rng([config.seed, _TAG_IMAGE_DRAW, cap.index])
    ppm = size / lesion.fov_mm * cap.zoom
    img = _skin(rng, lesion.fitzpatrick, size, ppm)

    cv = _paint_lesion(config, lesion, size)
    # Inverse map: image pixel -> lesion canvas pixel (rotate by -rotation, divide by zoom).
    centre = np.array([(0.5 + cap.offset[0]) * size, (0.5 + cap.offset[1]) * size])
    cr, sr = math.cos(cap.rotation) / cap.zoom, math.sin(cap.rotation) / cap.zoom
    matrix = (cr, sr, cv.half + 0.5 - cr * centre[0] - sr * centre[1],
              -sr, cr, cv.half + 0.5 + sr * centre[0] - cr * centre[1])  # fmt: skip
    # Only the image box the rotated canvas can reach is resampled: the rest is untouched skin.
    reach = (cv.half + 2) * cap.zoom * math.sqrt(2.0)
    x0, y0 = (max(0, math.floor(c - reach)) for c in centre)
    x1, y1 = (min(size, math.ceil(c + reach)) for c in centre)
    dfield = np.full((size, size), 10.0, dtype=np.float32)
    if x1 > x0 and y1 > y0:
        a, b, c, d, e, f = matrix
        box = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
        stack = np.concatenate([cv.mul, cv.add, cv.d[..., None]], axis=2)
        warped = warp_affine(stack, (x1 - x0, y1 - y0), box, fill=(1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 10.0))
        patch = img[y0:y1, x0:x1]
        lesioned = patch * warped[..., 0:3] + warped[..., 3:6]
        patch += _CONTRAST[lesion.fitzpatrick - 1] * (lesioned - patch)
        dfield[y0:y1, x0:x1] = warped[..., 6]

    flags = cap.flags
    radius_px = lesion.diameter_mm / 2.0 * ppm
    if flags["ink"]:
        _ink(rng, img, size, centre, radius_px, scale)
    if flags["hair"]:
        _hair(rng, img, size, scale)
    if flags["bubbles"]:
        _bubbles(rng, img, size, scale)
    if flags["ruler"]:
        _ruler(rng, img, size, ppm, scale)
    device = DERMOSCOPES[cap.dermoscope]
    img *= np.asarray(device.gains, dtype=np.float32) * (device.exposure * cap.exposure)
    np.clip(img, 0.0, 1.0, out=img)
    if device.gamma != 1.0:
        np.power(img, device.gamma, out=img)
    if device.saturation != 1.0:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + device.saturation * (img - grey)
    if flags["vignette"]:
        _vignette(rng, img, size)
    if flags["blur"]:
        img = blur(img, rng.uniform(1.0, 2.2) * scale)
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out, dfield


def render_image(config: SynthConfig, index: int) -> tuple[Image.Image, np.ndarray, dict[str, Any]]:
    """Draw image ``index`` of a dataset: a pure function of ``(config, index)``, independent of ``n``.

    Args:
        config: the dataset config (``n`` only bounds ``index``).
        index: image number, ``0 <= index < config.n``.

    Returns:
        (RGB image of ``config.size`` pixels, boolean lesion mask of the same size, metadata row).

    Raises:
        IndexError: ``index`` is outside ``0 .. n-1``.
    """
    lesion, cap = _plan(config, index)
    pixels, dfield = _render(config, lesion, cap)
    image = Image.fromarray(pixels)
    if config.size != config.render_size:
        image = image.resize((config.size, config.size), Image.LANCZOS)
        dfield = np.asarray(Image.fromarray(dfield).resize((config.size, config.size), Image.BILINEAR))
    return image, dfield < 1.0, _row(lesion, cap)


# --------------------------------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------------------------------


def _write_chunk(config: SynthConfig, root: str, indices: range) -> list[dict[str, Any]]:
    rows = []
    for i in indices:
        image, mask, row = render_image(config, i)
        name = row["image_id"]
        # No EXIF, fixed settings: PIL's encoder is deterministic, so files are byte-identical.
        image.save(os.path.join(root, "images", f"{name}.jpg"), format="JPEG", quality=config.jpeg_quality)
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            os.path.join(root, "masks", f"{name}_segmentation.png"), format="PNG"
        )
        rows.append(row)
    return rows


def _chunks(n: int, workers: int) -> Iterator[range]:
    step = max(4, min(128, n // (workers * 8) or 1))
    for start in range(0, n, step):
        yield range(start, min(n, start + step))


def generate_dataset(out_dir: str | os.PathLike[str], config: SynthConfig, progress: bool = True,
                     overwrite: bool = False) -> pd.DataFrame:  # fmt: skip
    """Write a synthetic dataset in the ISIC 2018 Task 3 layout and return its metadata.

    Layout: ``images/<image_id>.jpg``, ``masks/<image_id>_segmentation.png`` (0/255),
    ``ISIC2018_Task3_GroundTruth.csv`` (one-hot, 1.0/0.0) and ``metadata.csv``. Everything is written
    into a hidden temporary folder beside ``out_dir``, the CSVs last, and renamed into place at the
    end, so an interrupted run never leaves a folder that looks complete.

    Args:
        out_dir: the dataset folder to create.
        config: what to generate.
        progress: show a tqdm progress bar.
        overwrite: replace an existing non-empty ``out_dir`` (otherwise that is an error).

    Returns:
        The metadata table (the contents of ``metadata.csv``).

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is false.
    """
    import pandas as pd
    from tqdm import tqdm

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose another folder or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        workers = config.workers or os.cpu_count() or 1
        workers = max(1, min(workers, config.n // 16 or 1))
        rows: list[dict[str, Any]] = []
        with tqdm(total=config.n, disable=not progress, desc="synth", unit="img") as bar:
            if workers == 1:
                for chunk in _chunks(config.n, 1):
                    rows += _write_chunk(config, str(tmp), chunk)
                    bar.update(len(chunk))
            else:
                import multiprocessing as mp

                # fork where there is one: workers start at once and need no importable __main__
                # (stdin scripts, notebooks); they touch only numpy and PIL, never the parent's threads.
                method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
                with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
                    futures = [pool.submit(_write_chunk, config, str(tmp), c) for c in _chunks(config.n, workers)]
                    for fut in futures:
                        part = fut.result()
                        rows += part
                        bar.update(len(part))
        meta = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
        onehot = np.zeros((config.n, len(CLASSES)))
        onehot[np.arange(config.n), [CLASSES.index(dx.upper()) for dx in meta["dx"]]] = 1.0
        truth = pd.DataFrame(onehot, columns=list(CLASSES))
        truth.insert(0, "image", meta["image_id"])
        truth.to_csv(tmp / GROUND_TRUTH_FILE, index=False)
        meta.to_csv(tmp / METADATA_FILE, index=False)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(trash / "old")
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
