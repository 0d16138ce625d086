"""The service on PostgreSQL: the brief's round trip, feedback, and 503 without a row when the write fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from tests._postgres import admin_engine, postgres_database
from tests.serving.brief_schema import BRIEF_RESPONSE
from tests.serving.conftest import Live, start_service

from dermascan.store.models import PredictionRow


@pytest.fixture(scope="module")
def pg_live(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    admin = admin_engine()
    try:
        with postgres_database(admin) as url, start_service(tmp_path_factory.mktemp("pg"), tiny_bundle, url) as live:
            assert live.engine.dialect.name == "postgresql"
            yield live
    finally:
        admin.dispose()


def _predictions(live: Live) -> int:
    with Session(live.engine) as s:
        return s.scalar(select(func.count()).select_from(PredictionRow)) or 0


def test_round_trip_on_postgres(pg_live: Live) -> None:
    r = pg_live.analyze()
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), BRIEF_RESPONSE)
    pid = r.json()["prediction_id"]
    c = pg_live.client()
    assert c.post("/api/v1/feedback", json={"prediction_id": pid, "clinician_diagnosis": "melanoma"}).status_code == 201
    assert (
        c.post(
            "/api/v1/feedback",
            json={"prediction_id": pid, "histopathology": "melanocytic_nevus", "histopathology_date": "2026-11-30"},
        ).status_code
        == 201
    )
    got = c.get(f"/api/v1/predictions/{pid}").json()
    assert [f["supersedes"] for f in got["feedback"]] == [None, got["feedback"][0]["feedback_id"]]
    page = c.get("/api/v1/predictions", params={"awaiting_histopathology": "false"}).json()
    assert [p["prediction_id"] for p in page["items"]] == [pid]
    assert pg_live.client("clinic-b").get(f"/api/v1/predictions/{pid}").status_code == 404


def test_failed_write_on_postgres_answers_503_without_a_row(pg_live: Live) -> None:
    before = _predictions(pg_live)
    with pg_live.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full (test)'; "
                "END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON access_log FOR EACH ROW EXECUTE FUNCTION refuse()"))
    try:
        r = pg_live.analyze()
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert _predictions(pg_live) == before
    finally:
        with pg_live.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse ON access_log"))
    assert pg_live.analyze().status_code == 200 and _predictions(pg_live) == before + 1
