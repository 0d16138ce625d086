"""Reading a clinic's predictions and appending feedback (sync: run in the thread pool by the routers).

Every read and write is logged in the access log, in its own transaction: a read that cannot be logged is
not answered. Store failures answer 503.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dermascan.serving.analysis import diagnosis
from dermascan.serving.errors import ServiceError, not_found, store_unavailable
from dermascan.serving.schemas import FeedbackRecord, FeedbackRequest, PredictionPage, PredictionRecord
from dermascan.serving.state import ServiceState
from dermascan.store import access, feedback, predictions
from dermascan.store.clinics import Caller
from dermascan.store.db import transaction
from dermascan.store.models import Feedback, PredictionRow
from dermascan.store.predictions import PredictionFilter
from dermascan.taxonomy import OUTCOME_NAMES

T = TypeVar("T")
_OUTCOME_CODES = {name: code for code, name in OUTCOME_NAMES.items()}  # melanoma -> MEL, other -> OTHER


def _in_transaction(state: ServiceState, fn: Callable[[Session], T]) -> T:
    assert state.sessions is not None
    try:
        with transaction(state.sessions) as session:
            return fn(session)
    except SQLAlchemyError as e:
        raise store_unavailable() from e


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t  # SQLite hands back naive UTC


def feedback_record(f: Feedback) -> FeedbackRecord:
    return FeedbackRecord(
        feedback_id=f.id,
        prediction_id=f.prediction_id,
        created_at=_utc(f.created_at),
        clinician_diagnosis=OUTCOME_NAMES[f.clinician_label] if f.clinician_label else None,  # type: ignore[arg-type]
        histopathology=OUTCOME_NAMES[f.histopathology_label] if f.histopathology_label else None,  # type: ignore[arg-type]
        histopathology_date=f.histopathology_date,
        source=f.source,
        supersedes=f.supersedes,
    )


def prediction_record(row: PredictionRow, history: list[Feedback]) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=row.id,
        created_at=_utc(row.created_at),
        clinic_id=row.clinic_id,
        lesion_id=row.lesion_id,
        body_site=row.body_site,
        diagnosis=diagnosis(row.probabilities(), row.primary_class, row.melanoma_risk),
        melanoma_flag=row.melanoma_flag,
        risk_band=row.risk_band,
        threshold=row.threshold,  # type: ignore[arg-type]
        model_version=row.model_version,
        latency_ms=row.latency_ms,
        feedback=[feedback_record(f) for f in history],
    )


def _unknown(prediction_id: str) -> ServiceError:
    return not_found(
        f"no prediction {prediction_id!r} for this clinic; use a prediction_id returned by /api/v1/analyze"
    )


def add_feedback(state: ServiceState, caller: Caller, body: FeedbackRequest) -> FeedbackRecord:
    def write(session: Session) -> FeedbackRecord:
        if predictions.get(session, caller.clinic_id, body.prediction_id) is None:
            raise _unknown(body.prediction_id)
        row = feedback.append(
            session,
            body.prediction_id,
            _OUTCOME_CODES[body.clinician_diagnosis] if body.clinician_diagnosis else None,
            _OUTCOME_CODES[body.histopathology] if body.histopathology else None,
            body.histopathology_date,
            body.source,
        )
        access.record(session, caller, "feedback", body.prediction_id, {"feedback_id": row.id})
        return feedback_record(row)

    return _in_transaction(state, write)


def one(state: ServiceState, caller: Caller, prediction_id: str) -> PredictionRecord:
    def read(session: Session) -> PredictionRecord:
        row = predictions.get(session, caller.clinic_id, prediction_id)
        if row is None:
            raise _unknown(prediction_id)
        access.record(session, caller, "read", prediction_id)
        return prediction_record(row, feedback.history(session, prediction_id))

    return _in_transaction(state, read)


def page(state: ServiceState, caller: Caller, where: PredictionFilter, limit: int, offset: int) -> PredictionPage:
    def read(session: Session) -> PredictionPage:
        rows, total = predictions.list_for_clinic(session, caller.clinic_id, where, limit, offset)
        access.record(session, caller, "list", None, {"count": len(rows), "offset": offset})
        items = [prediction_record(r, feedback.history(session, r.id)) for r in rows]
        nxt = offset + len(rows) if offset + len(rows) < total else None
        return PredictionPage(items=items, total=total, limit=limit, offset=offset, next_offset=nxt)

    return _in_transaction(state, read)


__all__ = ["add_feedback", "feedback_record", "one", "page", "prediction_record"]
