"""Accepted API keys are trusted for ``key_cache_s`` seconds, no longer: the cache on its own (a fake clock) and
through a real server, where a key revoked in the store stops working once its entry expires."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.serving.conftest import jpeg, start_service

from dermascan.serving.key_cache import KeyCache
from dermascan.store import clinics, db
from dermascan.store.clinics import Caller


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_its_ttl_and_no_longer() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=10, clock=clock)
    a = Caller("clinic-a", "dsk_aaaaaaaa")
    cache.put("h-a", a)
    clock.now = 9.9
    assert cache.get("h-a") == a
    clock.now = 10.0
    assert cache.get("h-a") is None
    assert cache.get("h-unknown") is None


def test_the_cache_is_bounded_and_off_at_zero() -> None:
    cache = KeyCache(ttl_s=10, max_keys=2, clock=Clock())
    for i in range(3):
        cache.put(f"h{i}", Caller(f"clinic-{i}", "dsk_"))
    assert cache.get("h0") is None  # the oldest went first
    assert cache.get("h1") is not None and cache.get("h2") is not None
    off = KeyCache(ttl_s=0)
    off.put("h", Caller("clinic-a", "dsk_"))
    assert off.get("h") is None


@pytest.mark.parametrize("ttl", [0.0, 1.5])
def test_a_revoked_key_stops_working_within_the_ttl(tiny_bundle: Path, tmp_path: Path, ttl: float) -> None:
    with start_service(tmp_path, tiny_bundle, key_cache_s=ttl) as live:
        with db.transaction(db.session_factory(live.engine)) as s:
            _, key = clinics.add_clinic(s, "Clinic D")
        live.keys["clinic-d"] = key  # added while the server runs: works at once (a miss asks the store)
        assert live.analyze("clinic-d", jpeg()).status_code == 200
        with db.transaction(db.session_factory(live.engine)) as s:
            clinics.revoke(s, "clinic-d")
        revoked_at = time.monotonic()
        r = live.analyze("clinic-d", jpeg())
        if ttl == 0:
            assert r.status_code == 401, r.text  # no cache: the store is asked every time
            return
        if time.monotonic() - revoked_at < ttl:
            assert r.status_code == 200, r.text  # still trusted from the first answer
        time.sleep(max(0.0, revoked_at + ttl + 0.1 - time.monotonic()))
        r = live.analyze("clinic-d", jpeg())
        assert r.status_code == 401 and "unknown or revoked" in r.json()["error"]["message"]
