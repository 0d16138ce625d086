"""Request and response schemas of the HTTP API (pydantic; separate from the store's ORM models).

``AnalyzeRequest``/``AnalyzeResponse`` are exactly the brief's (section 4.2), the response extended with
``prediction_id``, ``risk_band``, ``melanoma_flag`` and ``threshold``. Class names are the API names of
:data:`dermascan.taxonomy.API_NAMES` (``melanocytic_nevus``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dermascan.taxonomy import API_NAMES, OUTCOME_NAMES

ApiClass = Literal[
    "melanoma",
    "melanocytic_nevus",
    "basal_cell_carcinoma",
    "actinic_keratosis",
    "benign_keratosis",
    "dermatofibroma",
    "vascular_lesion",
]
assert set(ApiClass.__args__) == set(API_NAMES.values())  # type: ignore[attr-defined]  # one taxonomy
#: Feedback answers: a class, ``other`` (outside the taxonomy), or ``not_biopsied`` (histopathology only).
Outcome = Literal[
    "melanoma",
    "melanocytic_nevus",
    "basal_cell_carcinoma",
    "actinic_keratosis",
    "benign_keratosis",
    "dermatofibroma",
    "vascular_lesion",
    "other",
    "not_biopsied",
]
assert set(Outcome.__args__) == set(OUTCOME_NAMES.values())  # type: ignore[attr-defined]

#: A 32x32 PNG (a dark disc on skin tone), so the documented example can be sent as it is.
EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAaElEQVR42mN8sGYaAy0BEwONwagFoxZQDliIUVTTMwmXVEtJHqU+wGM6QVnCF"
    "hDUT1ANE4WmE1TJRLnp+NWP5oNRC0YtwGMBwVKMSPVMZOghSSUT2TqJVMNEoX6CLmAcbXiNWjD4LQAAzcofhbbib6sAAAAASUVORK5CYII="
)
EXAMPLE_ID = "3f2b8c1e-6a4d-4f5e-9b7a-2c1d0e9f8a7b"
_ALL = {
    "melanoma": 0.03,
    "melanocytic_nevus": 0.87,
    "basal_cell_carcinoma": 0.02,
    "actinic_keratosis": 0.01,
    "benign_keratosis": 0.05,
    "dermatofibroma": 0.01,
    "vascular_lesion": 0.01,
}
_Strict = ConfigDict(extra="forbid")

ClinicId = Field(min_length=1, max_length=64, description="The calling clinic (must be the API key's clinic).")
PatientId = Field(min_length=1, max_length=256, description="Patient identifier; stored only as a keyed hash.")
LesionId = Field(None, max_length=128, description="The clinic's lesion identifier (optional).")
BodySite = Field(None, max_length=64, description="Anatomical site, e.g. 'back' (optional).")
ImageField = Field(description="Base64 PNG or JPEG; a data URL (data:image/png;base64,...) is accepted.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_base64.")
    message: str = Field(description="What is wrong and how to fix it.")


class ErrorBody(BaseModel):
    """Every error answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_base64",
                        "message": "image is not valid base64 (character '!' at position 4 is "
                        "not base64); encode the file with standard base64 (e.g. `base64 -w0 lesion.jpg`)",
                    }
                }
            ]
        }
    )
    error: ErrorDetail


class AnalyzeRequest(BaseModel):
    """The brief's request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image": EXAMPLE_PNG,
                    "clinic_id": "clinic-nord",
                    "patient_id": "P-000123",
                    "lesion_id": "L1",
                    "body_site": "back",
                }
            ]
        },
    )
    image: str = ImageField
    clinic_id: str = ClinicId
    patient_id: str = PatientId
    lesion_id: str | None = LesionId
    body_site: str | None = BodySite


class Diagnosis(BaseModel):
    primary: ApiClass = Field(description="Diagnosis by the decision rule (melanoma exactly when flagged).")
    confidence: float = Field(ge=0, le=1, description="Probability of the primary class.")
    melanoma_risk: float = Field(ge=0, le=1, description="Calibrated probability of melanoma.")
    all_classes: dict[ApiClass, float] = Field(description="Probability of each of the 7 classes.")


class AnalyzeResponse(BaseModel):
    """The brief's response, plus the prediction's id and its decision details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "diagnosis": {
                        "primary": "melanocytic_nevus",
                        "confidence": 0.87,
                        "melanoma_risk": 0.03,
                        "all_classes": _ALL,
                    },
                    "attention_map": EXAMPLE_PNG,
                    "attention_map_type": "image/png",
                    "recommendation": "Low risk. Routine follow-up.",
                    "model_version": "v2.4.1",
                    "latency_ms": 184,
                    "prediction_id": EXAMPLE_ID,
                    "risk_band": "low",
                    "melanoma_flag": False,
                    "threshold": 0.2,
                }
            ]
        }
    )
    diagnosis: Diagnosis
    attention_map: str | None = Field(
        description="Base64 image of the heat-map overlay, of type attention_map_type (null: heat maps off)."
    )
    attention_map_type: Literal["image/jpeg", "image/png"] | None = Field(
        None, description="Media type of attention_map (the service's attention_map_format): data:<type>;base64,..."
    )
    recommendation: str = Field(description="Advice chosen by the risk band (configurable).")
    model_version: str
    latency_ms: int = Field(ge=0, description="Server time from request received to response ready, ms.")
    prediction_id: str = Field(description="Id of the stored prediction (for feedback and look-up).")
    risk_band: Literal["low", "moderate", "high"] | None = Field(description="null for an uncalibrated model.")
    melanoma_flag: bool = Field(description="melanoma_risk >= threshold: refer.")
    threshold: float | None = Field(description="The locked melanoma threshold (null: uncalibrated model).")


class BatchImage(BaseModel):
    model_config = _Strict
    image: str = ImageField
    lesion_id: str | None = LesionId
    body_site: str | None = BodySite


class BatchRequest(BaseModel):
    """The lesions of one visit."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "clinic_id": "clinic-nord",
                    "patient_id": "P-000123",
                    "images": [
                        {"image": EXAMPLE_PNG, "lesion_id": "L1", "body_site": "back"},
                        {"image": EXAMPLE_PNG, "lesion_id": "L2", "body_site": "arm"},
                    ],
                }
            ]
        },
    )
    clinic_id: str = ClinicId
    patient_id: str = PatientId
    images: list[BatchImage] = Field(min_length=1, description="One entry per lesion (at most max_batch).")


class BatchItem(BaseModel):
    index: int = Field(ge=0, description="Position in the request's images.")
    result: AnalyzeResponse | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "index": 0,
                            "result": AnalyzeResponse.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                            "error": None,
                        },
                        {
                            "index": 1,
                            "result": None,
                            "error": {
                                "code": "unsupported_image_format",
                                "message": "images.1.image is a GIF image; only PNG and "
                                "JPEG are accepted: convert it first",
                            },
                        },
                    ],
                    "model_version": "v2.4.1",
                    "latency_ms": 230,
                }
            ]
        }
    )
    items: list[BatchItem]
    model_version: str
    latency_ms: int = Field(ge=0)


class FeedbackRequest(BaseModel):
    """A clinician diagnosis and/or a histopathology result for a prediction (appended, never overwritten)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prediction_id": EXAMPLE_ID,
                    "clinician_diagnosis": "melanocytic_nevus",
                    "histopathology": "melanoma",
                    "histopathology_date": "2026-11-20",
                    "source": "histopathology-lab",
                }
            ]
        },
    )
    prediction_id: str = Field(min_length=1, max_length=36)
    clinician_diagnosis: Outcome | None = Field(None, description="A class, or other (not not_biopsied).")
    histopathology: Outcome | None = Field(None, description="A class, other, or not_biopsied.")
    histopathology_date: dt.date | None = Field(None, description="Date of the histopathology report.")
    source: str = Field("clinician", min_length=1, max_length=64, description="Who reports: clinician, lab, ...")

    @model_validator(mode="after")
    def _one_label(self) -> FeedbackRequest:
        if self.clinician_diagnosis is None and self.histopathology is None:
            raise ValueError("give clinician_diagnosis and/or histopathology")
        if self.histopathology_date is not None and self.histopathology is None:
            raise ValueError("histopathology_date needs histopathology")
        if self.clinician_diagnosis == "not_biopsied":
            raise ValueError("clinician_diagnosis cannot be not_biopsied; give that as the histopathology answer")
        return self


class FeedbackRecord(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "feedback_id": 2,
                    "prediction_id": EXAMPLE_ID,
                    "created_at": "2026-11-21T09:30:00Z",
                    "clinician_diagnosis": "melanocytic_nevus",
                    "histopathology": "melanoma",
                    "histopathology_date": "2026-11-20",
                    "source": "histopathology-lab",
                    "supersedes": 1,
                }
            ]
        }
    )
    feedback_id: int
    prediction_id: str
    created_at: dt.datetime
    clinician_diagnosis: Outcome | None
    histopathology: Outcome | None
    histopathology_date: dt.date | None
    source: str
    supersedes: int | None = Field(description="The earlier feedback this one corrects (kept as it was).")


class PredictionRecord(BaseModel):
    """A stored prediction as its clinic reads it back (no patient identifier, hashed or not)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "prediction_id": EXAMPLE_ID,
                    "created_at": "2026-11-18T14:02:11Z",
                    "clinic_id": "clinic-nord",
                    "lesion_id": "L1",
                    "body_site": "back",
                    "diagnosis": {
                        "primary": "melanocytic_nevus",
                        "confidence": 0.87,
                        "melanoma_risk": 0.03,
                        "all_classes": _ALL,
                    },
                    "melanoma_flag": False,
                    "risk_band": "low",
                    "threshold": 0.2,
                    "model_version": "v2.4.1",
                    "latency_ms": 184.0,
                    "feedback": FeedbackRecord.model_config["json_schema_extra"]["examples"],
                }
            ]
        }
    )  # type: ignore[index]
    prediction_id: str
    created_at: dt.datetime
    clinic_id: str
    lesion_id: str | None
    body_site: str | None
    diagnosis: Diagnosis
    melanoma_flag: bool
    risk_band: Literal["low", "moderate", "high"] | None
    threshold: float | None
    model_version: str
    latency_ms: float
    feedback: list[FeedbackRecord] = Field(description="All feedback, oldest first.")


class PredictionPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": PredictionRecord.model_config["json_schema_extra"]["examples"],  # type: ignore[index]
                    "total": 41,
                    "limit": 1,
                    "offset": 0,
                    "next_offset": 1,
                }
            ]
        }
    )
    items: list[PredictionRecord] = Field(description="Newest first.")
    total: int = Field(ge=0, description="Predictions matching the filters.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: Literal["ok"]


class Ready(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "model_version": "v2.4.1", "runtime": "onnxruntime"}]}
    )
    status: Literal["ready"]
    model_version: str
    runtime: str


__all__ = [
    "EXAMPLE_PNG",
    "AnalyzeRequest",
    "AnalyzeResponse",
    "ApiClass",
    "BatchImage",
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "Diagnosis",
    "ErrorBody",
    "ErrorDetail",
    "FeedbackRecord",
    "FeedbackRequest",
    "Health",
    "PredictionPage",
    "PredictionRecord",
    "Ready",
]
