"""A failed store write answers 503 and leaves nothing behind: no prediction row, no feedback row, no kept image.

The write fails for real: a trigger makes the database refuse the access-log insert, which comes after the
prediction rows in the same transaction, so a half-written answer would show as orphan prediction rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from tests.serving.conftest import Live, b64, jpeg, start_service

from dermascan.store.models import Feedback, PredictionRow

FAIL_TRIGGER = (
    "CREATE TRIGGER fail_access_log BEFORE INSERT ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'disk full (test trigger)'); END"
)


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kept")


@pytest.fixture(scope="module")
def live(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory, kept: Path) -> Iterator[Live]:
    with start_service(tmp_path_factory.mktemp("failing"), tiny_bundle, keep_images=str(kept)) as service:
        yield service


def _count(live: Live, table: type) -> int:
    with Session(live.engine) as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


@pytest.fixture
def failing_store(live: Live) -> Iterator[None]:
    with live.engine.begin() as conn:
        conn.execute(text(FAIL_TRIGGER))
    yield
    with live.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER fail_access_log"))


def test_failed_write_answers_503_and_stores_nothing(live: Live, kept: Path, failing_store: None) -> None:
    before = _count(live, PredictionRow)
    r = live.analyze()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable" and "nothing was recorded" in r.json()["error"]["message"]
    batch = live.client().post(
        "/api/v1/analyze/batch",
        json={"clinic_id": "clinic-a", "patient_id": "P", "images": [{"image": b64(jpeg(seed=i))} for i in range(3)]},
    )
    assert batch.status_code == 503
    assert _count(live, PredictionRow) == before
    assert not [p for p in kept.rglob("*") if p.is_file()]  # kept images were removed again


def test_failed_feedback_write_answers_503(live: Live) -> None:
    pid = live.analyze().json()["prediction_id"]
    with live.engine.begin() as conn:
        conn.execute(text(FAIL_TRIGGER))
    try:
        r = live.client().post("/api/v1/feedback", json={"prediction_id": pid, "histopathology": "melanoma"})
    finally:
        with live.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fail_access_log"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert _count(live, Feedback) == 0


def test_after_recovery_answers_are_stored_and_images_kept(live: Live, kept: Path) -> None:
    r = live.analyze()
    assert r.status_code == 200
    with Session(live.engine) as s:
        row = s.get(PredictionRow, r.json()["prediction_id"])
    assert row is not None and row.image_uri is not None
    path = Path(row.image_uri)
    assert path.parent == kept / "clinic-a" and path.name == f"{row.id}.jpg" and path.read_bytes() == jpeg()


def test_dropped_table_answers_503(live: Live) -> None:
    with live.engine.begin() as conn:
        conn.execute(text("DROP TABLE access_log"))
    before = _count(live, PredictionRow)
    assert live.analyze().status_code == 503
    assert live.client().get("/api/v1/predictions").status_code == 503
    assert _count(live, PredictionRow) == before
