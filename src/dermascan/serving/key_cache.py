"""Accepted API keys, trusted for a few seconds without asking the store again.

The key lookup was ~1.7 ms of every answer against PostgreSQL, the largest step the service adds after the
model. Only accepted keys are cached: an unknown or revoked key always costs a lookup, and a new key works at
once. A revocation (``dermascan clinic revoke``, another process) takes effect within the cache's lifetime
(``key_cache_s``, 10 s by default; 0 turns the cache off).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dermascan.store.clinics import Caller


class KeyCache:
    """Accepted API keys (by their SHA-256, never the key itself) -> caller, each for ``ttl_s`` seconds.

    Bounded: past ``max_keys`` the oldest entries go first (200 clinics hold a few keys each).
    """

    def __init__(self, ttl_s: float, max_keys: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_keys, self._clock = ttl_s, max_keys, clock
        self._entries: dict[str, tuple[float, Caller]] = {}  # insertion order = age
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[key_hash]
                return None
            return entry[1]

    def put(self, key_hash: str, caller: Caller) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._entries.pop(key_hash, None)
            while len(self._entries) >= self.max_keys:
                del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (self._clock() + self.ttl_s, caller)


__all__ = ["KeyCache"]
