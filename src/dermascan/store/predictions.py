"""Predictions: one row per answered image, written in the transaction that answers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from dermascan.store.models import Feedback, PredictionRow


@dataclass(frozen=True)
class PredictionFilter:
    """What ``GET /api/v1/predictions`` may narrow a clinic's list to.

    Attributes:
        flagged: only flagged (``True``) or only unflagged (``False``) predictions; ``None``: both.
        awaiting_histopathology: only those without (``True``) or with (``False``) a histopathology result.
        since: created at or after (UTC).
        until: created before (UTC).
    """

    flagged: bool | None = None
    awaiting_histopathology: bool | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def add(session: Session, row: PredictionRow) -> PredictionRow:
    """Insert a prediction (flushed, so a failing write raises here, inside the caller's transaction)."""
    session.add(row)
    session.flush()
    return row


def get(session: Session, clinic_id: str, prediction_id: str) -> PredictionRow | None:
    """A clinic's own prediction; another clinic's is ``None``, exactly like a missing one (and so is a shadow
    row: the challenger's answers are never shown)."""
    row = session.get(PredictionRow, prediction_id)
    return row if row is not None and row.clinic_id == clinic_id and row.role != "shadow" else None


def list_for_clinic(
    session: Session, clinic_id: str, where: PredictionFilter, limit: int, offset: int
) -> tuple[list[PredictionRow], int]:
    """A clinic's predictions, newest first, one page.

    Returns:
        (rows of the page, total matching rows).
    """
    query = select(PredictionRow).where(PredictionRow.clinic_id == clinic_id, PredictionRow.role != "shadow")
    if where.flagged is not None:
        query = query.where(PredictionRow.melanoma_flag.is_(where.flagged))
    if where.awaiting_histopathology is not None:
        has_histo = exists().where(
            Feedback.prediction_id == PredictionRow.id, Feedback.histopathology_label.is_not(None)
        )
        query = query.where(~has_histo if where.awaiting_histopathology else has_histo)
    if where.since is not None:
        query = query.where(PredictionRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(PredictionRow.created_at < where.until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.scalars(
        query.order_by(PredictionRow.created_at.desc(), PredictionRow.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(page), total


def answered_between(session: Session, since: dt.datetime | None, until: dt.datetime | None) -> list[PredictionRow]:
    """Every answer shown to a clinic (primary and canary rows, not shadow ones) created in ``[since, until)``,
    oldest first: what monitoring reads."""
    query = select(PredictionRow).where(PredictionRow.role != "shadow")
    if since is not None:
        query = query.where(PredictionRow.created_at >= since)
    if until is not None:
        query = query.where(PredictionRow.created_at < until)
    return list(session.scalars(query.order_by(PredictionRow.created_at, PredictionRow.id)))


def count(session: Session, role: str | None = None) -> int:
    """All rows, or those of one ``role`` (primary, canary, shadow)."""
    query = select(func.count()).select_from(PredictionRow)
    if role is not None:
        query = query.where(PredictionRow.role == role)
    return session.scalar(query) or 0


__all__ = ["PredictionFilter", "add", "answered_between", "count", "get", "list_for_clinic"]
