"""Predictions: one row per answered image, written in the transaction that answers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

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


def shadow_pairs(
    session: Session, challenger_version: str | None = None, champion_version: str | None = None
) -> list[tuple[PredictionRow, PredictionRow]]:
    """``(champion row, shadow row)`` of every shadowed image, oldest first: the challenger's answer (``role`` shadow)
    joined to the champion's answer it shadows (``shadow_of``), optionally of one version each."""
    champion = aliased(PredictionRow)
    query = (
        select(champion, PredictionRow)
        .join(champion, PredictionRow.shadow_of == champion.id)
        .where(PredictionRow.role == "shadow")
    )
    if challenger_version is not None:
        query = query.where(PredictionRow.model_version == challenger_version)
    if champion_version is not None:
        query = query.where(champion.model_version == champion_version)
    return [(a, b) for a, b in session.execute(query.order_by(PredictionRow.created_at, PredictionRow.id))]


def answers_since(
    session: Session, role: str, since: dt.datetime, model_version: str | None = None
) -> list[tuple[float, bool]]:
    """``(latency_ms, melanoma_flag)`` of every answer of ``role`` (``primary``, ``canary``) created at or after
    ``since``, optionally of one model version: the live figures a rollout step checks."""
    query = select(PredictionRow.latency_ms, PredictionRow.melanoma_flag).where(
        PredictionRow.role == role, PredictionRow.created_at >= since
    )
    if model_version is not None:
        query = query.where(PredictionRow.model_version == model_version)
    return [(float(a), bool(b)) for a, b in session.execute(query)]


def latest_version(session: Session, role: str) -> str | None:
    """The model version of the newest row of ``role`` (``shadow``: the challenger under test)."""
    return session.scalar(
        select(PredictionRow.model_version)
        .where(PredictionRow.role == role)
        .order_by(PredictionRow.created_at.desc())
        .limit(1)
    )


__all__ = [
    "PredictionFilter",
    "add",
    "answered_between",
    "answers_since",
    "count",
    "get",
    "latest_version",
    "list_for_clinic",
    "shadow_pairs",
]
