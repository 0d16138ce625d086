"""What is drawn per lesion and per capture, before any pixel: class, patient, framing, nuisances.

A lesion (class, malignancy, patient metadata, site, diameter) is drawn from ``(seed, lesion number)``
and shared by all its images; a capture (device, rotation, zoom, offset, nuisance flags) from
``(seed, image number)``. Together they make the image's ``metadata.csv`` row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from dermascan.data.schema import NUISANCE_FLAGS
from dermascan.data.synthetic.config import DERMOSCOPES, TAG_IMAGE_META, TAG_LESION_META, SynthConfig
from dermascan.data.synthetic.layout import image_id, lesion_id, lesion_of_image
from dermascan.taxonomy import CLASSES

if TYPE_CHECKING:
    import pandas as pd

METADATA_COLUMNS: tuple[str, ...] = (
    "image_id", "lesion_id", "dx", "age", "sex", "localization", "fitzpatrick", "diameter_mm", "dermoscope",
    *NUISANCE_FLAGS,
)  # fmt: skip

# Capture variation of repeated photographs of one lesion.
_ZOOM_RANGE = (0.88, 1.12)
_OFFSET_RANGE = 0.10

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
class Lesion:
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
def draw_lesion(config_key: tuple, lesion_no: int) -> Lesion:
    seed, priors, fitz_mix, atypical_rate, featureless_rate, overlap = config_key
    rng = np.random.default_rng([seed, TAG_LESION_META, lesion_no])
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
    return Lesion(lesion_no, code, float(malignancy), subtype, age, sex, localization, fitz,
                   round(diameter, 1), fov)  # fmt: skip


def config_key(config: SynthConfig) -> tuple:
    return (
        config.seed,
        tuple(float(p) for p in config.priors),
        tuple(np.asarray(config.fitzpatrick_mix) / sum(config.fitzpatrick_mix)),
        config.atypical_nevus_rate,
        config.featureless_melanoma_rate,
        config.feature_overlap,
    )


@dataclass(frozen=True)
class Capture:
    """One photograph of a lesion: framing, device and nuisances (cheap to draw)."""

    index: int
    view: int
    dermoscope: str
    rotation: float  # radians
    zoom: float
    offset: tuple[float, float]  # lesion centre offset, in image sides
    exposure: float
    flags: dict[str, int] = field(default_factory=dict)


def draw_capture(config: SynthConfig, index: int, lesion: Lesion, view: int) -> Capture:
    rng = np.random.default_rng([config.seed, TAG_IMAGE_META, index])
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
    u = rng.random(len(NUISANCE_FLAGS))
    flags = {name: int(u[k] < min(1.0, s * rates[name])) for k, name in enumerate(NUISANCE_FLAGS)}
    return Capture(index, view, device.name, rotation, zoom, offset, exposure, flags)


def plan_image(config: SynthConfig, index: int) -> tuple[Lesion, Capture]:
    if not 0 <= index < config.n:
        raise IndexError(f"image index {index} is outside 0..{config.n - 1}")
    lesion_no, view = lesion_of_image(config.seed, config.multi_image_lesion_rate, index)
    lesion = draw_lesion(config_key(config), lesion_no)
    return lesion, draw_capture(config, index, lesion, view)


def metadata_row(lesion: Lesion, cap: Capture) -> dict[str, Any]:
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
    return metadata_row(*plan_image(config, index))


def describe_image(config: SynthConfig, index: int) -> dict[str, Any]:
    """The metadata row plus the hidden generator truth (for error analysis and docs, never written).

    Adds ``malignancy`` (the melanocytic latent, 0 for other classes), ``subtype`` (``typical``;
    ``atypical`` or ``dermal`` nevus; ``featureless`` melanoma; ``pigmented`` look-alike of a
    non-melanocytic class; ``lentigo`` keratosis), ``view`` (capture number of the lesion),
    ``rotation_deg`` and ``zoom``.
    """
    lesion, cap = plan_image(config, index)
    return {
        **metadata_row(lesion, cap),
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
