"""`dermascan real-demo` end to end at toy size (synthetic images with lesion ids; the real folder is never
needed): trained, locked on validation, scored on held-out lesions, audited, exported, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermascan.cli import app


@pytest.mark.slow
def test_real_demo_runs_every_step_and_reports_held_out_figures(synth_small: Path, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("batch_size: 32\nprecision: 32-true\n")
    out = tmp_path / "real"
    args = ["real-demo", "--data", str(synth_small), "--out", str(out), "--config", str(tmp_path / "recipe.yaml"),
            "--image-size", "32", "--epochs", "1", "--no-bench"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out lesions" in result.output and "melanoma AUROC" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"]["arch"] == "timm:resnet18d"  # the preset
    assert summary["recipe"]["image_size"] == 32  # overridden
    assert summary["recipe"]["weights"] == "none"  # from scratch: nothing to download
    h = summary["held_out"]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "test" and h["n_images"] == metrics["n"] > 0
    for key in ("melanoma_auroc", "specificity_at_90_sensitivity", "sensitivity", "specificity"):
        assert h[key]["lo"] <= h[key]["value"] <= h[key]["hi"], key
    point = json.loads((out / "run" / "operating_point.json").read_text())
    assert point["selected_on"] == "val" and h["locked_threshold"] == point["threshold"]
    # the bundle serves the same locked point, and the audit covers the attributes the data records
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["decision"]["threshold"] == pytest.approx(point["threshold"])
    fairness = json.loads((out / "fairness" / "fairness.json").read_text())
    assert {"age", "sex", "localization"} <= set(fairness["attributes"])
    report = (out / "report.md").read_text()
    assert "held-out HAM10000 lesions" in report and "| melanoma AUROC |" in report
    assert summary["recipe"]["checkpoint"] == "last" and "(the last one shipped)" in report  # ham10000-cpu's choice
    assert summary["latency_ms_p50"] is None and "Latency" not in report

    # resumed: the finished training is not run again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "==> train" not in again.output
    assert json.loads((out / "summary.json").read_text())["training_minutes"] == summary["training_minutes"]


def test_real_demo_names_a_missing_data_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["real-demo", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "nowhere" in result.output
