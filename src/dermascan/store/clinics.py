"""Clinics and their API keys."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dermascan.errors import DermaScanError
from dermascan.store.identity import hash_api_key, key_prefix, new_api_key
from dermascan.store.models import ApiKey, Clinic, utcnow

_CLINIC_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Key roles: a clinic key reads and writes its own clinic's cases; an operator key also reads the monitoring
#: page (every clinic's aggregate figures, never a case).
ROLES = ("clinic", "operator")


class ClinicError(DermaScanError, ValueError):
    """A clinic that cannot be added or found, with the fix."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: the clinic a valid key belongs to, the key's prefix (for the access log) and its role."""

    clinic_id: str
    key_prefix: str
    role: str = "clinic"

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def clinic_id_for(name: str) -> str:
    """The ``clinic_id`` of a clinic name: lower case, runs of other characters become ``-``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()  # Süd -> Sud
    slug = re.sub(r"[^a-z0-9_]+", "-", ascii_name.strip().lower()).strip("-")[:64]
    if not _CLINIC_ID.match(slug):
        raise ClinicError(f"clinic name {name!r} has no letters or digits; give a name such as 'Clinic Nord'")
    return slug


def add_clinic(session: Session, name: str, role: str = "clinic") -> tuple[Clinic, str]:
    """Create a clinic (or reuse one of that id) and a new API key of ``role`` (:data:`ROLES`).

    Returns:
        (clinic, key): the key in clear, the only time it exists outside the caller's hands.
    """
    if role not in ROLES:
        raise ClinicError(f"key role {role!r} is unknown; use one of {', '.join(ROLES)}")
    cid = clinic_id_for(name)
    clinic = session.get(Clinic, cid)
    if clinic is None:
        clinic = Clinic(id=cid, name=name.strip())
        session.add(clinic)
        session.flush()  # the key's foreign key needs the clinic row first (no ORM relationship orders them)
    key = new_api_key()
    session.add(ApiKey(clinic_id=cid, prefix=key_prefix(key), key_hash=hash_api_key(key), role=role))
    session.flush()
    return clinic, key


def revoke(session: Session, clinic_id: str, prefix: str | None = None) -> int:
    """Revoke a clinic's keys (all of them, or the one starting with ``prefix``).

    Returns:
        How many keys were revoked.

    Raises:
        ClinicError: no such clinic, or no active key with that prefix.
    """
    if session.get(Clinic, clinic_id) is None:
        raise ClinicError(f"no clinic {clinic_id!r}; `dermascan clinic list --db URL` shows them")
    query = update(ApiKey).where(ApiKey.clinic_id == clinic_id, ApiKey.revoked_at.is_(None))
    if prefix:
        query = query.where(ApiKey.prefix == prefix)
    n = session.execute(query.values(revoked_at=utcnow())).rowcount
    if prefix and n == 0:
        raise ClinicError(f"clinic {clinic_id!r} has no active key with prefix {prefix!r}")
    return n


def authenticate(session: Session, key: str) -> Caller | None:
    """The caller of an API key, or ``None`` for an unknown or revoked key."""
    row = session.execute(
        select(ApiKey.clinic_id, ApiKey.prefix, ApiKey.role).where(
            ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else Caller(row.clinic_id, row.prefix, row.role)


def list_clinics(session: Session) -> list[tuple[Clinic, int]]:
    """Every clinic with its number of active keys."""
    clinics = session.scalars(select(Clinic).order_by(Clinic.id)).all()
    active = {c: 0 for c in (cl.id for cl in clinics)}
    for (cid,) in session.execute(select(ApiKey.clinic_id).where(ApiKey.revoked_at.is_(None))):
        active[cid] += 1
    return [(c, active[c.id]) for c in clinics]


__all__ = ["ROLES", "Caller", "ClinicError", "add_clinic", "authenticate", "clinic_id_for", "list_clinics", "revoke"]
