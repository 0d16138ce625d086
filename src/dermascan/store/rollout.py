"""The rollout's state: the canary share the running services re-read without a restart, and the staged rollouts
with their steps (who, why, when)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dermascan.store.models import Rollout, RolloutStep, ServingSetting, utcnow

CANARY_SHARE = "canary_share"


def get_share(session: Session, name: str = CANARY_SHARE) -> float | None:
    """The stored share, or ``None`` when none was set (the service's flag then applies)."""
    row = session.get(ServingSetting, name)
    return None if row is None else row.value


def set_share(session: Session, value: float, name: str = CANARY_SHARE) -> None:
    """Set a share in [0, 1]; every service picks it up within its ``share_refresh_s``.

    Raises:
        ValueError: the share is outside [0, 1].
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1] (0.1 for 10% of traffic), got {value}")
    row = session.get(ServingSetting, name)
    if row is None:
        session.add(ServingSetting(name=name, value=value, updated_at=utcnow()))
    else:
        row.value, row.updated_at = value, utcnow()
    session.flush()


def active(session: Session) -> Rollout | None:
    """The rollout in progress (at most one: a second start is refused by :func:`create`)."""
    return session.scalars(select(Rollout).where(Rollout.status == "active").order_by(Rollout.id.desc())).first()


def latest(session: Session, model_version: str | None = None) -> Rollout | None:
    """The newest rollout (of ``model_version``), whatever its status."""
    query = select(Rollout).order_by(Rollout.id.desc()).limit(1)
    if model_version is not None:
        query = query.where(Rollout.model_version == model_version)
    return session.scalars(query).first()


def create(session: Session, model_version: str, champion_version: str | None, share: float) -> Rollout:
    """A new active rollout at stage 0 (the caller sets the share and records the step).

    Raises:
        ValueError: another rollout is active.
    """
    running = active(session)
    if running is not None:
        raise ValueError(
            f"rollout of {running.model_version} is active (share {running.share:.0%}): advance it to the end or "
            f"roll it back first (`dermascan rollout rollback --model {running.model_version}`)"
        )
    now = utcnow()
    row = Rollout(
        model_version=model_version,
        champion_version=champion_version,
        status="active",
        stage=0,
        share=share,
        started_at=now,
        stage_started_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def add_step(
    session: Session,
    rollout: Rollout,
    action: str,
    from_share: float,
    to_share: float,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> RolloutStep:
    """Append one step to the rollout's history."""
    step = RolloutStep(
        rollout_id=rollout.id,
        created_at=utcnow(),
        action=action,
        from_share=from_share,
        to_share=to_share,
        actor=actor,
        reason=reason,
        evidence=evidence,
    )
    session.add(step)
    session.flush()
    return step


def steps(session: Session, rollout_id: int) -> list[RolloutStep]:
    """A rollout's steps, oldest first."""
    return list(
        session.scalars(select(RolloutStep).where(RolloutStep.rollout_id == rollout_id).order_by(RolloutStep.id))
    )


__all__ = ["CANARY_SHARE", "active", "add_step", "create", "get_share", "latest", "set_share", "steps"]
