"""Confirmed production cases exported as an ISIC-layout dataset: histopathology first, no patient identifiers,
lesions kept together, shadow rows and unconfirmed or 'other' cases left out; the folder reads and fingerprints."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.data.readers import read_dataset
from dermascan.lifecycle.abtest_sim import simulated_row
from dermascan.lifecycle.feedback_data import FeedbackExportError, export_feedback
from dermascan.store import db, feedback, predictions
from dermascan.store.images import ImageKeeper
from dermascan.store.models import Clinic
from dermascan.testing import synthetic_jpeg

runner = CliRunner()
PATIENT = "a" * 64  # a keyed patient hash as the store holds it


def _store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    keeper = ImageKeeper(str(tmp_path / "kept"))
    rng = np.random.default_rng(0)
    when = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    ids: dict[str, str] = {}
    with db.transaction(db.session_factory(engine)) as session:
        session.add(Clinic(id="c1", name="C1"))
        session.flush()

        def case(name: str, lesion: str | None, role: str = "primary", of: str | None = None, keep: bool = True) -> str:
            pid = str(uuid.uuid4())
            uri = keeper.put("c1", pid, synthetic_jpeg(64, 48, seed=len(ids)), "jpg") if keep else None
            row = simulated_row(pid, "v1", False, role, of, when=when, clinic="c1", rng=rng, image_uri=uri)
            row.patient_hash, row.lesion_id = PATIENT, lesion
            predictions.add(session, row)
            ids[name] = pid
            return pid

        a = case("histo_over_clinician", "L1")
        feedback.append(session, a, "NV", None, None, "clinician")
        feedback.append(session, a, "NV", "MEL", dt.date(2026, 11, 9), "histopathology")  # histopathology wins
        feedback.append(session, case("same_lesion", "L1"), "BKL", None, None, "clinician")
        feedback.append(session, case("other_lesion", "L2"), None, "BCC", None, "histopathology")
        feedback.append(session, case("not_biopsied", "L3"), "DF", "NOBIOPSY", None, "clinician")  # clinician's
        feedback.append(session, case("outside_taxonomy", "L4"), None, "OTHER", None, "histopathology")
        case("unconfirmed", "L5")
        feedback.append(session, case("no_image", "L6", keep=False), "NV", None, None, "clinician")
        shadow = case("shadow", "L1", role="shadow", of=a)
        feedback.append(session, shadow, None, "NV", None, "histopathology")  # never exported: not a served answer
    engine.dispose()
    return url, ids


def test_export_feedback_writes_a_trainable_isic_dataset(tmp_path: Path) -> None:
    url, ids = _store(tmp_path)
    out = tmp_path / "feedback"
    result = runner.invoke(app, ["export-feedback", "--db", url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    gt = pd.read_csv(out / "ISIC2018_Task3_GroundTruth.csv")
    meta = pd.read_csv(out / "metadata.csv").set_index("image_id")
    label = gt.set_index("image").idxmax(axis=1)
    image = {name: f"FB_{pid.replace('-', '')[:16]}" for name, pid in ids.items()}
    assert set(label.index) == {
        image[n] for n in ("histo_over_clinician", "same_lesion", "other_lesion", "not_biopsied")
    }
    assert label[image["histo_over_clinician"]] == "MEL" and label[image["not_biopsied"]] == "DF"
    assert meta.loc[image["histo_over_clinician"], "dx_type"] == "histo"
    assert meta.loc[image["not_biopsied"], "dx_type"] == "consensus"
    lesions = meta["lesion_id"]
    assert lesions[image["histo_over_clinician"]] == lesions[image["same_lesion"]] != lesions[image["other_lesion"]]
    text = "".join(p.read_text() for p in out.glob("*.csv")) + (out / "dataset.json").read_text()
    assert PATIENT not in text and "L1" not in text  # neither the patient hash nor the clinic's lesion label
    index = read_dataset(out)
    record = json.loads((out / "dataset.json").read_text())
    assert record["fingerprint"] == index.fingerprint() and record["n_images"] == 4
    assert record["skipped"] == {"unconfirmed": 1, "other": 1, "no kept image": 1, "image unreadable": 0}
    again = runner.invoke(app, ["export-feedback", "--db", url, "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_nothing_to_export_says_how_to_get_cases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db.upgrade(db.make_engine(url))
    with pytest.raises(FeedbackExportError, match="--keep-images"):
        export_feedback(url, tmp_path / "out")
