"""The repositories on SQLite and PostgreSQL: clinics and keys, predictions, feedback, the access log, rollback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from dermascan.store import access, clinics, db, feedback, predictions
from dermascan.store.identity import PatientHasher, PatientKeyError, hash_api_key
from dermascan.store.models import ApiKey, PredictionRow, prob_column
from dermascan.store.predictions import PredictionFilter
from dermascan.taxonomy import CLASSES


def _row(clinic: str, flag: bool = False, at: dt.datetime | None = None) -> PredictionRow:
    probs = dict.fromkeys(CLASSES, 1 / 7)
    return PredictionRow(
        id=str(uuid.uuid4()),
        clinic_id=clinic,
        patient_hash="0" * 64,
        model_version="v1",
        bundle_digest="d" * 64,
        role="primary",
        **{prob_column(c): p for c, p in probs.items()},
        primary_class="NV",
        melanoma_risk=1 / 7,
        melanoma_flag=flag,
        risk_band="low",
        threshold=0.2,
        latency_ms=12.5,
        width=64,
        height=48,
        brightness=0.5,
        contrast=0.1,
        mean_r=0.6,
        mean_g=0.4,
        mean_b=0.3,
        **({"created_at": at} if at else {}),
    )


def test_clinic_keys_hash_only_and_revoke(engine: Engine) -> None:
    sessions = db.session_factory(engine)
    with db.transaction(sessions) as s:
        clinic, key = clinics.add_clinic(s, "Clinic Süd")
        _, key2 = clinics.add_clinic(s, "clinic süd")  # same clinic, a second key
    assert clinic.id == "clinic-sud" and key != key2 and key.startswith("dsk_") and len(key) > 40
    with db.transaction(sessions) as s:
        stored = s.scalars(select(ApiKey)).all()
        assert {k.key_hash for k in stored} == {hash_api_key(key), hash_api_key(key2)}
        assert not any(key in (k.key_hash, k.prefix) for k in stored)  # the key itself is nowhere
        assert clinics.authenticate(s, key) == clinics.Caller("clinic-sud", key[:12])
        assert clinics.authenticate(s, "dsk_guess") is None
        assert clinics.revoke(s, "clinic-sud", key[:12]) == 1
        assert clinics.authenticate(s, key) is None and clinics.authenticate(s, key2) is not None
        assert clinics.revoke(s, "clinic-sud") == 1
        assert clinics.authenticate(s, key2) is None
        with pytest.raises(clinics.ClinicError, match="no clinic 'nope'"):
            clinics.revoke(s, "nope")


def test_predictions_list_filters_pages_and_isolation(engine: Engine) -> None:
    sessions = db.session_factory(engine)
    t0 = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    with db.transaction(sessions) as s:
        clinics.add_clinic(s, "a")
        clinics.add_clinic(s, "b")
        rows = [predictions.add(s, _row("a", flag=i % 2 == 0, at=t0 + dt.timedelta(hours=i))) for i in range(5)]
        other = predictions.add(s, _row("b"))
        feedback.append(s, rows[1].id, None, "BKL", dt.date(2026, 11, 3), "lab")
        feedback.append(s, rows[2].id, "MEL", None, None, "clinician")
    ids = [r.id for r in rows]
    with sessions() as s:

        def listed(**kw: object) -> list[str]:
            page, total = predictions.list_for_clinic(s, "a", PredictionFilter(**kw), 100, 0)
            assert total == len(page)
            return [r.id for r in page]

        assert listed() == ids[::-1]  # newest first
        assert listed(flagged=True) == [ids[4], ids[2], ids[0]]
        assert listed(flagged=False) == [ids[3], ids[1]]
        assert listed(awaiting_histopathology=False) == [ids[1]]
        assert listed(awaiting_histopathology=True) == [ids[4], ids[3], ids[2], ids[0]]
        assert listed(since=t0 + dt.timedelta(hours=1), until=t0 + dt.timedelta(hours=3)) == [ids[2], ids[1]]
        page, total = predictions.list_for_clinic(s, "a", PredictionFilter(), 2, 2)
        assert [r.id for r in page] == [ids[2], ids[1]] and total == 5
        assert predictions.get(s, "a", other.id) is None and predictions.get(s, "b", other.id) is not None
        back = predictions.get(s, "a", ids[0])
        assert back is not None and back.probabilities() == pytest.approx(dict.fromkeys(CLASSES, 1 / 7))


def test_feedback_appends_and_supersedes(engine: Engine) -> None:
    sessions = db.session_factory(engine)
    with db.transaction(sessions) as s:
        clinics.add_clinic(s, "a")
        pid = predictions.add(s, _row("a")).id
        first = feedback.append(s, pid, "NV", None, None, "clinician")
        second = feedback.append(s, pid, "NV", "MEL", dt.date(2026, 11, 20), "lab")
    with sessions() as s:
        hist = feedback.history(s, pid)
    assert [f.id for f in hist] == [first.id, second.id]
    assert (hist[0].clinician_label, hist[0].histopathology_label, hist[0].supersedes) == ("NV", None, None)
    assert (hist[1].histopathology_label, hist[1].histopathology_date, hist[1].supersedes) == (
        "MEL",
        dt.date(2026, 11, 20),
        first.id,
    )


def test_failed_write_rolls_back_the_whole_transaction(engine: Engine) -> None:
    """A real failure (a trigger) after the prediction insert leaves no prediction row."""
    sessions = db.session_factory(engine)
    with db.transaction(sessions) as s:
        clinics.add_clinic(s, "a")
        caller = clinics.Caller("a", "dsk_12345678")
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER no_log BEFORE INSERT ON access_log BEGIN SELECT RAISE(ABORT, 'no'); END"))
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION no_log() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text("CREATE TRIGGER no_log BEFORE INSERT ON access_log FOR EACH ROW EXECUTE FUNCTION no_log()")
            )
    with pytest.raises(SQLAlchemyError), db.transaction(sessions) as s:
        predictions.add(s, _row("a"))
        access.record(s, caller, "analyze")
    with sessions() as s:
        assert predictions.count(s) == 0 and access.entries(s) == []


def test_access_log_and_clinic_listing(engine: Engine) -> None:
    sessions = db.session_factory(engine)
    with db.transaction(sessions) as s:
        clinics.add_clinic(s, "a")
        clinics.add_clinic(s, "a")
        clinics.add_clinic(s, "b")
        access.record(s, clinics.Caller("a", "dsk_aaaaaaaa"), "read", "pid-1", {"n": 1})
    with sessions() as s:
        assert [(c.id, n) for c, n in clinics.list_clinics(s)] == [("a", 2), ("b", 1)]
        (entry,) = access.entries(s, "a")
    assert (entry.action, entry.prediction_id, entry.detail) == ("read", "pid-1", {"n": 1})


def test_patient_hasher(tmp_path) -> None:
    key = "k" * 32
    assert PatientHasher.from_sources(key, None)("P-1") == hmac.new(key.encode(), b"P-1", hashlib.sha256).hexdigest()
    (tmp_path / "key").write_text(key + "\n")
    assert PatientHasher.from_sources(None, tmp_path / "key")("P-1") == PatientHasher.from_sources(key, None)("P-1")
    assert "k" * 8 not in repr(PatientHasher.from_sources(key, None))
    with pytest.raises(PatientKeyError, match="DERMASCAN_PATIENT_KEY"):
        PatientHasher.from_sources(None, None)
    with pytest.raises(PatientKeyError, match="at least 16"):
        PatientHasher.from_sources("short", None)
    with pytest.raises(PatientKeyError, match="does not exist"):
        PatientHasher.from_sources(None, tmp_path / "missing")
