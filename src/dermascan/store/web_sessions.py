"""Sessions of the clinician page: an opaque random token in the browser's cookie, its SHA-256 in the store."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dermascan.store.clinics import Caller
from dermascan.store.identity import hash_api_key
from dermascan.store.models import ApiKey, WebSession, utcnow


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t  # SQLite hands back naive UTC


def open_session(session: Session, api_key: str, lifetime: dt.timedelta) -> tuple[str, Caller] | None:
    """Start a session for a valid, unrevoked API key.

    Returns:
        (token, caller), the token in clear (only the browser keeps it); ``None`` for an unknown or revoked key.
    """
    key = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(api_key), ApiKey.revoked_at.is_(None))
    ).first()
    if key is None:
        return None
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=hash_api_key(token), api_key_id=key.id, expires_at=utcnow() + lifetime))
    session.flush()
    return token, Caller(key.clinic_id, key.prefix, key.role)


def caller_of(session: Session, token: str) -> Caller | None:
    """The clinic of a live session (not expired, not signed out, its key not revoked), else ``None``."""
    row = session.execute(
        select(WebSession.expires_at, ApiKey.clinic_id, ApiKey.prefix, ApiKey.role)
        .join(ApiKey, ApiKey.id == WebSession.api_key_id)
        .where(WebSession.token_hash == hash_api_key(token), ApiKey.revoked_at.is_(None))
    ).first()
    if row is None or _aware(row.expires_at) <= utcnow():
        return None
    return Caller(row.clinic_id, row.prefix, row.role)


def close_session(session: Session, token: str) -> None:
    """Sign out: the token no longer opens anything (expired sessions of any clinic are swept too)."""
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_api_key(token)))
    session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))


__all__ = ["caller_of", "close_session", "open_session"]
