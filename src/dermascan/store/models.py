"""The store's tables as SQLAlchemy 2 typed models. Alembic owns the schema (``store/migrations``); these
classes describe it for queries and must stay in step with the latest migration (a test compares them).

No clear patient identifier and no image bytes are ever stored: ``predictions.patient_hash`` is an
HMAC-SHA256 (:mod:`dermascan.store.identity`), and kept images live outside the database, by reference.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dermascan.taxonomy import CLASSES


def utcnow() -> dt.datetime:
    """Timezone-aware UTC now: every timestamp in the store is UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    type_annotation_map = {dt.datetime: DateTime(timezone=True)}  # noqa: RUF012 (SQLAlchemy reads it)


class Clinic(Base):
    """A clinic that calls the service; its ``id`` is the ``clinic_id`` of the API."""

    __tablename__ = "clinics"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """One API key of a clinic. Only the key's SHA-256 is kept (keys are random, 256 bits: no salt needed);
    ``prefix`` is the key's first characters, shown in listings and logs to tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # clinic: the clinical API and page for its own clinic; operator: also the monitoring page and gauges
    role: Mapped[str] = mapped_column(String(16), default="clinic", server_default="clinic")


class PredictionRow(Base):
    """One answered image: the decision, the model that made it and the features drift detection reads."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_clinic_created", "clinic_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id"))
    patient_hash: Mapped[str] = mapped_column(String(64), index=True)
    lesion_id: Mapped[str | None] = mapped_column(String(128), default=None)
    body_site: Mapped[str | None] = mapped_column(String(64), default=None)
    model_version: Mapped[str] = mapped_column(String(128))
    bundle_digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="primary")  # primary / shadow / canary
    # A shadow row: the champion's prediction it shadows (that one is the answer the clinician saw).
    shadow_of: Mapped[str | None] = mapped_column(ForeignKey("predictions.id"), index=True, default=None)
    # The rollout in force when this prediction was made (None: no challenger configured).
    shadow_share: Mapped[float | None] = mapped_column(Float, default=None)
    canary_share: Mapped[float | None] = mapped_column(Float, default=None)
    # All seven probabilities, one column each (ISIC 2018 order), so monitoring queries read them directly.
    p_mel: Mapped[float] = mapped_column(Float)
    p_nv: Mapped[float] = mapped_column(Float)
    p_bcc: Mapped[float] = mapped_column(Float)
    p_akiec: Mapped[float] = mapped_column(Float)
    p_bkl: Mapped[float] = mapped_column(Float)
    p_df: Mapped[float] = mapped_column(Float)
    p_vasc: Mapped[float] = mapped_column(Float)
    primary_class: Mapped[str] = mapped_column(String(8))
    melanoma_risk: Mapped[float] = mapped_column(Float)
    melanoma_flag: Mapped[bool] = mapped_column(Boolean)
    risk_band: Mapped[str | None] = mapped_column(String(16), default=None)
    threshold: Mapped[float | None] = mapped_column(Float, default=None)
    latency_ms: Mapped[float] = mapped_column(Float)
    # Image features for data quality and drift (no pixels; :mod:`dermascan.monitoring.features`): size, luma
    # mean/std, channel means, all in [0, 1]; and since 0004 sharpness, grey-world deviation and dark-corner
    # share (NULL on rows stored before: never measured).
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    brightness: Mapped[float] = mapped_column(Float)
    contrast: Mapped[float] = mapped_column(Float)
    mean_r: Mapped[float] = mapped_column(Float)
    mean_g: Mapped[float] = mapped_column(Float)
    mean_b: Mapped[float] = mapped_column(Float)
    sharpness: Mapped[float | None] = mapped_column(Float, default=None)
    grey_world: Mapped[float | None] = mapped_column(Float, default=None)
    dark_corner: Mapped[float | None] = mapped_column(Float, default=None)
    image_uri: Mapped[str | None] = mapped_column(Text, default=None)  # only when image keeping is on
    # Since 0006: the penultimate features through the bundle's projection (:mod:`dermascan.inference.embedding`),
    # what embedding drift compares; comparable only between rows of one bundle (``bundle_digest``).
    embedding: Mapped[list[float] | None] = mapped_column(JSON, default=None)

    def probabilities(self) -> dict[str, float]:
        """Class code -> probability, ISIC 2018 order."""
        return {c: getattr(self, prob_column(c)) for c in CLASSES}


class Feedback(Base):
    """A clinician diagnosis and/or histopathology result for a prediction. Rows are only ever appended: a
    correction is a new row (``supersedes`` the previous one), so the history stays readable."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    clinician_label: Mapped[str | None] = mapped_column(String(8), default=None)
    histopathology_label: Mapped[str | None] = mapped_column(String(8), default=None)
    histopathology_date: Mapped[dt.date | None] = mapped_column(Date, default=None)
    source: Mapped[str] = mapped_column(String(64), default="clinician")
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("feedback.id"), default=None)


class AccessLog(Base):
    """Who read or wrote what: one row per authenticated call on clinical data (no identifiers, no images)."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    clinic_id: Mapped[str] = mapped_column(String(64), index=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))  # analyze / read / list / feedback
    prediction_id: Mapped[str | None] = mapped_column(String(36), default=None)
    detail: Mapped[dict | None] = mapped_column(JSON, default=None)


class WebSession(Base):
    """A signed-in clinician page (the API key stays with the browser only for the sign-in request). Only the
    session token's SHA-256 is kept; the session ends at sign-out, at ``expires_at``, or when its key is revoked."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()


class ServingSetting(Base):
    """A setting the running services re-read without a restart (``canary_share``: the rollout's share)."""

    __tablename__ = "serving_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Rollout(Base):
    """A staged rollout of a challenger on the canary share (10% -> 50% -> 100%), its state now."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(128))
    champion_version: Mapped[str | None] = mapped_column(String(128), default=None)
    status: Mapped[str] = mapped_column(String(16), index=True)  # active / completed / rolled_back
    stage: Mapped[int] = mapped_column(Integer)  # index into the rollout's stages; -1 once rolled back
    share: Mapped[float] = mapped_column(Float)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    stage_started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RolloutStep(Base):
    """One step of a rollout (start, advance, hold, rollback, complete): who, why, when, and the live figures it
    rested on. Rows are only appended."""

    __tablename__ = "rollout_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    from_share: Mapped[float] = mapped_column(Float)
    to_share: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict | None] = mapped_column(JSON, default=None)


def prob_column(code: str) -> str:
    """Name of the probability column of a class code (``MEL`` -> ``p_mel``)."""
    return f"p_{code.lower()}"


__all__ = [
    "AccessLog",
    "ApiKey",
    "Base",
    "Clinic",
    "Feedback",
    "PredictionRow",
    "Rollout",
    "RolloutStep",
    "ServingSetting",
    "WebSession",
    "prob_column",
    "utcnow",
]
