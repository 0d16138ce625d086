"""Settings the running services re-read without a restart: today the canary share of a rollout."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dermascan.store.models import ServingSetting, utcnow

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


__all__ = ["CANARY_SHARE", "get_share", "set_share"]
