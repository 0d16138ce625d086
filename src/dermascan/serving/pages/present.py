"""From the API's answers to what the page shows: band word and colour, percentages, bars, the photo."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from dermascan.serving.schemas import Diagnosis
from dermascan.taxonomy import API_NAMES, CLASSES, DISPLAY_NAMES, OUTCOME_DISPLAY, OUTCOME_NAMES

_CODES = {name: code for code, name in API_NAMES.items()}
#: (word, css class): the word is always shown, the colour only repeats it.
BANDS = {
    "high": ("High risk", "band-high"),
    "moderate": ("Moderate risk", "band-moderate"),
    "low": ("Low risk", "band-low"),
    None: ("Not calibrated", "band-none"),
}
#: Feedback choices: (API name, words). The clinician picks a class or "other"; histopathology also "not biopsied".
CLINICIAN_CHOICES = [(OUTCOME_NAMES[c], OUTCOME_DISPLAY[c]) for c in (*CLASSES, "OTHER")]
HISTOPATHOLOGY_CHOICES = [(OUTCOME_NAMES[c], OUTCOME_DISPLAY[c]) for c in (*CLASSES, "OTHER", "NOBIOPSY")]
_OUTCOME_WORDS = dict(HISTOPATHOLOGY_CHOICES)


@dataclass
class Lesion:
    """One answered lesion as the page shows it."""

    prediction_id: str
    band_word: str
    band_class: str
    flagged: bool
    risk_pct: float
    threshold_pct: float | None
    primary: str
    confidence_pct: float
    bars: list[tuple[str, float]]  # (class name, percent), all seven, ISIC order
    recommendation: str
    model_version: str
    lesion_id: str | None = None
    body_site: str | None = None
    filename: str | None = None
    photo: str | None = None  # data: URL
    heatmap: str | None = None  # data: URL
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def threshold_text(self) -> str:
        if self.threshold_pct is None:
            return "No locked threshold: this model is not calibrated."
        where = "at or above" if self.flagged else "below"
        return f"{where} the locked melanoma threshold of {self.threshold_pct:.1f}%"


def lesion(
    d: Diagnosis,
    risk_band: str | None,
    threshold: float | None,
    flagged: bool,
    model_version: str,
    prediction_id: str,
    recommendation: str,
    **extra: object,
) -> Lesion:
    word, css = BANDS[risk_band]
    probs = {_CODES[name]: p for name, p in d.all_classes.items()}
    return Lesion(
        prediction_id=prediction_id,
        band_word=word,
        band_class=css,
        flagged=flagged,
        risk_pct=100 * d.melanoma_risk,
        threshold_pct=None if threshold is None else 100 * threshold,
        primary=DISPLAY_NAMES[_CODES[d.primary]],
        confidence_pct=100 * d.confidence,
        bars=[(DISPLAY_NAMES[c], 100 * probs[c]) for c in CLASSES],
        recommendation=recommendation,
        model_version=model_version,
        **extra,  # type: ignore[arg-type]
    )


def outcome_words(name: str | None) -> str:
    return _OUTCOME_WORDS.get(name, "—") if name else "—"


def photo_url(data: bytes, max_side: int) -> str | None:
    """The upright photo, downscaled like the heat-map overlay, as a JPEG data: URL (``None`` if unreadable)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    except Exception:  # the analysis already refused or accepted this image; the photo is only a backdrop
        return None
    if max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = ["BANDS", "CLINICIAN_CHOICES", "HISTOPATHOLOGY_CHOICES", "Lesion", "lesion", "outcome_words", "photo_url"]
