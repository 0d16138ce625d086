"""Feedback, the predictions list and clinic isolation, against a live server and its store."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.serving.conftest import Live, jpeg

from dermascan.store.models import AccessLog, Feedback, PredictionRow


@pytest.fixture(scope="module")
def ids(live: Live) -> list[str]:
    """Five predictions of clinic-a (oldest first) and one of clinic-b; two flagged, three not (set in the store,
    since a random model's flags cannot be chosen)."""
    out = []
    for i in range(5):
        r = live.analyze(image=jpeg(seed=i), patient_id=f"P-{i}")
        assert r.status_code == 200, r.text
        out.append(r.json()["prediction_id"])
    assert live.analyze("clinic-b").status_code == 200
    with Session(live.engine) as s, s.begin():
        s.execute(update(PredictionRow).where(PredictionRow.id.in_(out[:2])).values(melanoma_flag=True))
        s.execute(update(PredictionRow).where(PredictionRow.id.in_(out[2:])).values(melanoma_flag=False))
    return out


def test_feedback_round_trip_appends_a_correction(live: Live, ids: list[str]) -> None:
    c = live.client()
    first = c.post("/api/v1/feedback", json={"prediction_id": ids[0], "clinician_diagnosis": "melanocytic_nevus"})
    assert first.status_code == 201, first.text
    assert first.json()["supersedes"] is None and first.json()["clinician_diagnosis"] == "melanocytic_nevus"
    second = c.post(
        "/api/v1/feedback",
        json={
            "prediction_id": ids[0],
            "clinician_diagnosis": "melanocytic_nevus",
            "histopathology": "melanoma",
            "histopathology_date": "2026-11-20",
            "source": "histopathology-lab",
        },
    )
    assert second.status_code == 201, second.text
    assert second.json()["supersedes"] == first.json()["feedback_id"]

    got = c.get(f"/api/v1/predictions/{ids[0]}").json()
    assert [f["feedback_id"] for f in got["feedback"]] == [first.json()["feedback_id"], second.json()["feedback_id"]]
    assert got["feedback"][0] == first.json()  # the first entry is kept as it was
    assert (
        got["feedback"][1]["histopathology"] == "melanoma" and got["feedback"][1]["histopathology_date"] == "2026-11-20"
    )
    with Session(live.engine) as s:  # in the store: two rows, class codes, the date
        rows = s.scalars(select(Feedback).where(Feedback.prediction_id == ids[0]).order_by(Feedback.id)).all()
    assert [(r.clinician_label, r.histopathology_label, r.source) for r in rows] == [
        ("NV", None, "clinician"),
        ("NV", "MEL", "histopathology-lab"),
    ]
    assert rows[1].histopathology_date == dt.date(2026, 11, 20)


def test_list_is_own_clinic_newest_first(live: Live, ids: list[str]) -> None:
    page = live.client().get("/api/v1/predictions", params={"limit": 100}).json()
    own = [p["prediction_id"] for p in page["items"]]
    assert set(ids) <= set(own)
    assert all(p["clinic_id"] == "clinic-a" for p in page["items"])
    created = [p["created_at"] for p in page["items"]]
    assert created == sorted(created, reverse=True)
    assert [i for i in own if i in ids] == ids[::-1]
    assert page["total"] == len(own) and page["next_offset"] is None


def test_list_filters(live: Live, ids: list[str]) -> None:
    c = live.client()

    def listed(**params: object) -> set[str]:
        r = c.get("/api/v1/predictions", params={"limit": 100, **params})
        assert r.status_code == 200, r.text
        return {p["prediction_id"] for p in r.json()["items"]} & set(ids)

    assert listed(flagged="true") == set(ids[:2])
    assert listed(flagged="false") == set(ids[2:])
    for i, body in (
        (0, {"histopathology": "melanoma"}),
        (3, {"histopathology": "benign_keratosis"}),
        (4, {"clinician_diagnosis": "melanoma"}),
    ):  # ids[4]: a clinician label is not histology
        assert c.post("/api/v1/feedback", json={"prediction_id": ids[i], **body}).status_code == 201
    with_histo = {ids[0], ids[3]}
    assert listed(awaiting_histopathology="false") == with_histo
    assert listed(awaiting_histopathology="true") == set(ids) - with_histo
    assert ids[4] in listed(awaiting_histopathology="true", flagged="false")

    with Session(live.engine) as s:
        times = {r.id: r.created_at for r in s.scalars(select(PredictionRow).where(PredictionRow.id.in_(ids)))}
    since, until = times[ids[1]].isoformat(), times[ids[3]].isoformat()  # naive UTC from SQLite: read as UTC
    assert listed(since=since, until=until) == {ids[1], ids[2]}
    assert listed(
        since=times[ids[1]].replace(tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),
        until=until,
    ) == {ids[1], ids[2]}  # the same instant in another zone


def test_pagination(live: Live, ids: list[str]) -> None:
    c = live.client()
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = c.get("/api/v1/predictions", params={"limit": 2, "offset": offset}).json()
        assert len(page["items"]) <= 2 and page["limit"] == 2 and page["offset"] == offset
        seen += [p["prediction_id"] for p in page["items"]]
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) == page["total"]
    assert [i for i in seen if i in ids] == ids[::-1]


def test_clinic_isolation(live: Live, ids: list[str]) -> None:
    b = live.client("clinic-b")
    assert b.post("/api/v1/analyze", json={"image": "x", "clinic_id": "clinic-a", "patient_id": "P"}).status_code == 403
    r = b.get(f"/api/v1/predictions/{ids[0]}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = b.post("/api/v1/feedback", json={"prediction_id": ids[0], "clinician_diagnosis": "melanoma"})
    assert r.status_code == 404
    listed = {p["prediction_id"] for p in b.get("/api/v1/predictions").json()["items"]}
    assert listed and not listed & set(ids)


def test_access_log_names_clinic_and_key_never_the_patient(live: Live, ids: list[str]) -> None:
    live.client().get(f"/api/v1/predictions/{ids[2]}")
    with Session(live.engine) as s:
        entries = s.scalars(select(AccessLog)).all()
    actions = {(e.clinic_id, e.action) for e in entries}
    assert {
        ("clinic-a", "analyze"),
        ("clinic-a", "read"),
        ("clinic-a", "list"),
        ("clinic-a", "feedback"),
        ("clinic-b", "analyze"),
    } <= actions
    assert any(e.prediction_id == ids[2] and e.action == "read" for e in entries)
    assert all(e.key_prefix.startswith("dsk_") and len(e.key_prefix) == 12 for e in entries)
    assert not any("P-" in repr(e.detail) for e in entries)
