"""Feedback: clinician and histopathology labels, appended (a correction never overwrites)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from dermascan.store.models import Feedback, PredictionRow


def append(
    session: Session,
    prediction_id: str,
    clinician_label: str | None,
    histopathology_label: str | None,
    histopathology_date: dt.date | None,
    source: str,
    created_at: dt.datetime | None = None,
) -> Feedback:
    """Add a feedback row; it ``supersedes`` the prediction's latest one, which stays as it was.

    ``created_at`` defaults to now; the traffic simulation gives the simulated moment the result arrived.
    """
    previous = latest(session, prediction_id)
    row = Feedback(
        prediction_id=prediction_id,
        clinician_label=clinician_label,
        histopathology_label=histopathology_label,
        histopathology_date=histopathology_date,
        source=source,
        supersedes=None if previous is None else previous.id,
        **({} if created_at is None else {"created_at": created_at}),
    )
    session.add(row)
    session.flush()
    return row


def history(session: Session, prediction_id: str) -> list[Feedback]:
    """All feedback of a prediction, oldest first."""
    return list(session.scalars(select(Feedback).where(Feedback.prediction_id == prediction_id).order_by(Feedback.id)))


def of_predictions_between(session: Session, since: dt.datetime | None, until: dt.datetime | None) -> list[Feedback]:
    """All feedback rows of the predictions created in ``[since, until)``, oldest first (monitoring's labels)."""
    query = select(Feedback).join(PredictionRow, PredictionRow.id == Feedback.prediction_id)
    if since is not None:
        query = query.where(PredictionRow.created_at >= since)
    if until is not None:
        query = query.where(PredictionRow.created_at < until)
    return list(session.scalars(query.order_by(Feedback.id)))


def latest(session: Session, prediction_id: str) -> Feedback | None:
    return session.scalars(
        select(Feedback).where(Feedback.prediction_id == prediction_id).order_by(Feedback.id.desc()).limit(1)
    ).first()


__all__ = ["append", "history", "latest", "of_predictions_between"]
