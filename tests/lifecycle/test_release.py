"""The release chain on the tiny run: it stops at a failing gate without registering, and registers the
challenger when the gates pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.lifecycle import registry

pytestmark = pytest.mark.slow  # two evaluate -> export -> bench chains: ~40 s

runner = CliRunner()


def test_release_stops_at_a_failing_gate_then_registers_when_they_pass(tiny_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(tiny_run, tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "strict.yaml").write_text("accuracy_min: 0.999\n")  # a 2-epoch model at 32 px cannot reach it
    args = ["release", "--run", str(run), "--tracking-uri", uri, "--repeats", "3"]
    failed = runner.invoke(app, [*args, "--out", str(tmp_path / "r1"), "--gates", str(tmp_path / "strict.yaml")])
    assert failed.exit_code == 1, failed.output
    record = json.loads((tmp_path / "r1" / "release.json").read_text())
    assert record["failed_step"] == "gate" and record["registered"] is None
    assert [s["step"] for s in record["steps"]] == ["evaluate", "export", "bench", "gate"]
    assert "accuracy" in record["gates"]["failed"] and "FAIL" in failed.output
    assert (tmp_path / "r1" / "bundle" / "manifest.json").is_file() and (tmp_path / "r1" / "bench.json").is_file()
    with pytest.raises(registry.RegistryError):
        registry.list_versions("dermascan", uri)  # nothing registered

    (tmp_path / "lenient.yaml").write_text(
        "melanoma_sensitivity_min: 0.0\naccuracy_min: 0.0\nlatency_p95_max_ms: 60000\nparity_min_agreement: 0.9\n"
    )
    passed = runner.invoke(app, [*args, "--out", str(tmp_path / "r2"), "--gates", str(tmp_path / "lenient.yaml")])
    assert passed.exit_code == 0, passed.output
    manifest = json.loads((tmp_path / "r2" / "bundle" / "manifest.json").read_text())
    val = sum(1 for line in (run / "splits.csv").read_text().splitlines() if line.endswith(",val"))
    assert {c["n_images"] for c in manifest["parity"]} == {min(val, 400)}  # every validation image, at most 400
    assert "registered dermascan version 1 as challenger" in passed.output
    challenger = registry.get_version("models:/dermascan@challenger", uri)
    assert challenger.tags["gates"] == "pass"
    assert challenger.digest == json.loads((tmp_path / "r2" / "release.json").read_text())["registered"]["digest"]

    # the demo's lifecycle step on the released artefacts: gates, registration, a short shadow period
    from dermascan.lifecycle.demo import demo_step

    r2 = tmp_path / "r2"
    demo = demo_step(tmp_path / "demo", run, r2 / "eval", r2 / "bundle", r2 / "bench.json")
    assert "melanoma sensitivity" in demo["gate_table"] and demo["gates_passed"] == (not demo["gates_failed"])
    assert demo["registered"]["version"] == "1" and demo["registered"]["data_fingerprint"].startswith("ds1:")
    assert demo["abtest"]["verdict"] == "continue" and demo["abtest"]["stop_rule"]["melanomas"] == 40
    assert demo["operating_characteristics"]["false_promotion"]["hi"] <= 0.05
    assert Path(demo["files"]["abtest"]).is_file()
