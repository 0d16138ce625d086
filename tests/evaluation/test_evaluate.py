"""`dermascan evaluate` and `dermascan compare` on a tiny trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.taxonomy import CLASSES

runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "e"
    result = runner.invoke(app, ["evaluate", "--run", str(tiny_run), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "melanoma sensitivity" in result.output
    return out


def test_writes_every_output(evaluated: Path) -> None:
    for name in ("metrics.json", "predictions.csv", "predictions_detail.csv", "report.html", "confusion_matrix.png",
                 "roc.png", "reliability.png", "per_class_f1.png"):
        assert (evaluated / name).stat().st_size > 0, name
    m = json.loads((evaluated / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy"):
        assert {"value", "lo", "hi"} <= set(m[key]) and {"value", "lo", "hi"} <= set(m["argmax"][key])
    mel = m["melanoma"]
    for key in ("sensitivity", "specificity", "auroc", "specificity_at_90_sensitivity"):
        assert {"value", "lo", "hi"} <= set(mel[key])
    assert mel["threshold"] == m["operating_point"]["threshold"]
    assert m["argmax"]["melanoma"]["threshold"] is None
    assert set(m["per_class"]) == set(CLASSES) and len(m["confusion_matrix"]) == 7
    assert m["calibration"]["temperature"] > 0


def test_predictions_csv_is_isic_submission_format(evaluated: Path, tiny_run: Path) -> None:
    table = pd.read_csv(evaluated / "predictions.csv")
    assert list(table.columns) == ["image", *CLASSES]
    assert all(table[c].dtype == np.float64 for c in CLASSES)
    np.testing.assert_allclose(table[list(CLASSES)].sum(axis=1), 1.0, atol=1e-5)
    splits = pd.read_csv(tiny_run / "splits.csv")
    assert sorted(table["image"]) == sorted(splits.loc[splits["split"] == "test", "image_id"])
    assert table["image"].is_unique


def test_threshold_is_locked_on_validation(evaluated: Path, tiny_run: Path, tmp_path: Path) -> None:
    point = json.loads((tiny_run / "operating_point.json").read_text())
    assert point["selected_on"] == "val" and point["validation"]["sensitivity"]["value"] >= 0.9
    # Evaluating the validation split reproduces the sensitivity the threshold was chosen for.
    result = runner.invoke(app, ["evaluate", "--run", str(tiny_run), "--out", str(tmp_path / "v"), "--split", "val"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert m["melanoma"]["threshold"] == point["threshold"]
    assert m["melanoma"]["sensitivity"]["value"] == pytest.approx(point["validation"]["sensitivity"]["value"])


def test_split_all_on_a_separate_folder(tiny_run: Path, synth_small: Path, tmp_path: Path) -> None:
    other = tmp_path / "external"
    shutil.copytree(synth_small, other)
    result = runner.invoke(app, ["evaluate", "--run", str(tiny_run), "--out", str(tmp_path / "x"), "--data",
                                 str(other), "--split", "all"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "x" / "predictions.csv")) == 240
    bad = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "dermascan train" in bad.output


def test_compare_side_by_side(evaluated: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    shutil.copytree(evaluated, second)
    result = runner.invoke(app, ["compare", str(evaluated), str(second), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "c" / "comparison.csv")
    assert len(table) == 4 and set(table["decision"]) == {"argmax", "threshold"}
    assert (tmp_path / "c" / "comparison.html").exists()
    assert "threshold" in result.output and "sens" in result.output
