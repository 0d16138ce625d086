"""The access log: who read or wrote which prediction (clinic and key prefix; never a patient id)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dermascan.store.clinics import Caller
from dermascan.store.models import AccessLog


def record(
    session: Session,
    caller: Caller,
    action: str,
    prediction_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Log one access inside the caller's transaction (it commits or rolls back with the data it describes)."""
    session.add(
        AccessLog(
            clinic_id=caller.clinic_id,
            key_prefix=caller.key_prefix,
            action=action,
            prediction_id=prediction_id,
            detail=detail,
        )
    )
    session.flush()


def entries(session: Session, clinic_id: str | None = None) -> list[AccessLog]:
    query = select(AccessLog).order_by(AccessLog.id)
    if clinic_id is not None:
        query = query.where(AccessLog.clinic_id == clinic_id)
    return list(session.scalars(query))


__all__ = ["entries", "record"]
