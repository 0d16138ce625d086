"""Feedback: clinician and histopathology labels, appended (a correction never overwrites)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from dermascan.store.models import Feedback, PredictionRow
from dermascan.taxonomy import CLASSES

#: Labels that confirm a case: a class, or ``OTHER`` (a diagnosis outside the taxonomy, so not melanoma).
#: ``NOBIOPSY`` says that no histopathology exists; it confirms nothing.
CONFIRMING = (*CLASSES, "OTHER")


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


def confirmed_labels(session: Session, prediction_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The confirmed label of each prediction that has one: ``{id: (label, "histopathology" | "clinician")}``.

    Histopathology first: the latest histopathology result that is a diagnosis wins; without one, the latest
    clinician diagnosis. Corrections are later rows, so "latest" is the corrected answer.
    """
    out: dict[str, tuple[str, str]] = {}
    ids = list(prediction_ids)
    for start in range(0, len(ids), 500):  # bounded IN lists
        rows = session.scalars(
            select(Feedback).where(Feedback.prediction_id.in_(ids[start : start + 500])).order_by(Feedback.id)
        )
        histo: dict[str, str] = {}
        clinician: dict[str, str] = {}
        for f in rows:
            if f.histopathology_label in CONFIRMING:
                histo[f.prediction_id] = f.histopathology_label
            if f.clinician_label in CONFIRMING:
                clinician[f.prediction_id] = f.clinician_label
        out.update({k: (v, "clinician") for k, v in clinician.items()})
        out.update({k: (v, "histopathology") for k, v in histo.items()})
    return out


__all__ = ["CONFIRMING", "append", "confirmed_labels", "history", "latest", "of_predictions_between"]
