"""Settings from flags, file and environment; the patient-key rule; the clinic and serve commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.serving.app import create_app
from dermascan.serving.settings import ServeSettings, SettingsError
from dermascan.store import clinics, db
from dermascan.store.identity import PatientKeyError


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "bundle": "b",
                "port": 9001,
                "max_batch": 4,
                "host": "0.0.0.0",
                "recommendations": {"low": "L", "moderate": "M", "high": "H", "uncalibrated": "U"},
            }
        )
    )
    monkeypatch.setenv("DERMASCAN_MAX_BATCH", "7")
    monkeypatch.setenv("DERMASCAN_HOST", "127.0.0.2")
    s = ServeSettings.load(cfg, host="127.0.0.3", port=None)
    assert (s.port, s.max_batch, s.host) == (9001, 7, "127.0.0.3")
    assert s.recommendations["low"] == "L" and s.bundle == Path("b")


def test_bad_settings_are_explained(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="file not found"):
        ServeSettings.load(tmp_path / "nope.yaml", bundle="b")
    (tmp_path / "bad.yaml").write_text("port: [1, 2")
    with pytest.raises(SettingsError, match="not valid YAML"):
        ServeSettings.load(tmp_path / "bad.yaml", bundle="b")
    (tmp_path / "typo.yaml").write_text("prot: 80\n")
    with pytest.raises(SettingsError, match="prot: Extra inputs are not permitted"):
        ServeSettings.load(tmp_path / "typo.yaml", bundle="b")
    with pytest.raises(SettingsError, match="recommendations lacks the band"):
        ServeSettings.load(None, bundle="b", recommendations={"low": "x"})


def test_refuses_to_start_without_patient_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DERMASCAN_PATIENT_KEY", raising=False)
    with pytest.raises(PatientKeyError, match="--dev"):
        create_app(ServeSettings(bundle=tmp_path))
    create_app(ServeSettings(bundle=tmp_path, dev=True))  # a throwaway key
    monkeypatch.setenv("DERMASCAN_PATIENT_KEY", "e" * 32)
    create_app(ServeSettings(bundle=tmp_path))

    result = CliRunner().invoke(app, ["serve", "--bundle", str(tmp_path)], env={"DERMASCAN_PATIENT_KEY": ""})
    assert result.exit_code == 2 and "no patient key" in result.output


def test_clinic_add_prints_key_once_and_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    added = runner.invoke(app, ["clinic", "add", "Clinic Nord", "--db", url])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("dsk_") and " " not in key and added.stdout.count(key) == 1
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    with sessions() as s:
        assert clinics.authenticate(s, key) == clinics.Caller("clinic-nord", key[:12])
    listed = runner.invoke(app, ["clinic", "list", "--db", url])
    assert "clinic-nord\tClinic Nord\t1 active key(s)" in listed.stdout
    revoked = runner.invoke(app, ["clinic", "revoke", "clinic-nord", "--db", url, "--key", key[:12]])
    assert revoked.exit_code == 0 and "revoked 1 key(s)" in revoked.stdout
    with sessions() as s:
        assert clinics.authenticate(s, key) is None
    missing = runner.invoke(app, ["clinic", "revoke", "nope", "--db", url])
    assert missing.exit_code == 2 and "no clinic 'nope'" in missing.output
    engine.dispose()
