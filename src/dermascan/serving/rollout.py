"""Which model answers a request and which answers are shadowed: deterministic shares of prediction ids.

A prediction id maps to a point in [0, 1) by SHA-256 (salted per purpose, so the shadow and canary samples are
independent); it is in a share ``s`` when its point is below ``s``. The same id always gets the same role, and
raising a share from 10% to 50% keeps the first 10% inside.

The canary share is re-read from the store's ``serving_settings`` row ``canary_share`` every ``share_refresh_s``
seconds (``dermascan.store.rollout.set_share``); without a row, the ``--canary-share`` flag applies.
"""

from __future__ import annotations

import hashlib
import logging
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dermascan.store import rollout as stored

log = logging.getLogger("dermascan.serving")


def share_point(prediction_id: str, salt: str) -> float:
    """The id's point in [0, 1) for ``salt`` (``"canary"``, ``"shadow"``)."""
    digest = hashlib.sha256(f"{salt}:{prediction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Rollout:
    """The shadow and canary shares of a service with a challenger.

    Args:
        shadow_share: share of champion answers also run on the challenger.
        canary_share: share of requests the challenger answers, until the store says otherwise.
        sessions: the store, for the stored canary share.
        refresh_s: how often to re-read it.
    """

    def __init__(
        self, shadow_share: float, canary_share: float, sessions: sessionmaker[Session] | None, refresh_s: float
    ) -> None:
        self.shadow_share = shadow_share
        self.flag_canary_share = canary_share
        self.canary_share = canary_share
        self.sessions = sessions
        self.refresh_s = refresh_s
        self._read_at = -float("inf")

    def stale(self) -> bool:
        return time.monotonic() - self._read_at >= self.refresh_s

    def refresh(self) -> None:
        """Re-read the stored canary share (blocking: call it from a worker thread). A failed read keeps the
        last share: a store hiccup must not flip traffic."""
        self._read_at = time.monotonic()
        if self.sessions is None:
            return
        try:
            with self.sessions() as session:
                value = stored.get_share(session)
        except SQLAlchemyError as e:
            log.warning("could not re-read the canary share (%s); keeping %.3f", type(e).__name__, self.canary_share)
            return
        new = self.flag_canary_share if value is None else value
        if new != self.canary_share:
            log.info("canary share %.3f -> %.3f", self.canary_share, new)
        self.canary_share = new

    def is_canary(self, prediction_id: str) -> bool:
        return share_point(prediction_id, "canary") < self.canary_share

    def is_shadowed(self, prediction_id: str) -> bool:
        return share_point(prediction_id, "shadow") < self.shadow_share


__all__ = ["Rollout", "share_point"]
