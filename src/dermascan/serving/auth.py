"""The auth dependency: ``Authorization: Bearer <key>`` -> the calling clinic (a key the store accepted is
trusted for ``key_cache_s`` seconds: :class:`~dermascan.serving.key_cache.KeyCache`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from dermascan.serving.errors import ServiceError, unauthorized
from dermascan.serving.state import State
from dermascan.store import clinics
from dermascan.store.clinics import Caller
from dermascan.store.identity import hash_api_key

_bearer = HTTPBearer(auto_error=False, description="A clinic's API key (`dermascan clinic add NAME`).")


async def caller(state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The clinic of a valid, unrevoked key.

    Raises:
        ServiceError: 401 without a Bearer key, or with an unknown or revoked one.
    """
    if credentials is None:
        raise unauthorized(
            "missing API key: send the header 'Authorization: Bearer <key>' "
            "(a clinic's key comes from `dermascan clinic add NAME`)"
        )
    key_hash = hash_api_key(credentials.credentials)
    found = state.key_cache.get(key_hash)
    if found is not None:
        return found
    assert state.sessions is not None
    sessions = state.sessions

    def lookup() -> Caller | None:
        with sessions() as session:
            return clinics.authenticate(session, credentials.credentials)

    try:
        found = await run_in_threadpool(lookup)
    except Exception as e:  # the store is down: no way to check the key
        raise ServiceError(503, "store_unavailable", "cannot check the API key: the store is unavailable") from e
    if found is None:
        raise unauthorized("unknown or revoked API key; ask the operator for a valid key")
    state.key_cache.put(key_hash, found)
    return found


Auth = Annotated[Caller, Depends(caller)]

__all__ = ["Auth", "caller"]
