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
    for name in (
        "metrics.json",
        "predictions.csv",
        "decisions.csv",
        "predictions_detail.csv",
        "report.html",
        "confusion_matrix.png",
        "roc.png",
        "reliability.png",
        "per_class_f1.png",
    ):
        assert (evaluated / name).stat().st_size > 0, name
    m = json.loads((evaluated / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy"):
        assert {"value", "lo", "hi"} <= set(m[key]) and {"value", "lo", "hi"} <= set(m["argmax"][key])
    mel = m["melanoma"]
    for key in ("sensitivity", "specificity", "auroc"):
        assert {"value", "lo", "hi"} <= set(mel[key])
    assert {"value", "lo", "hi"} <= set(m["threshold_free"]["specificity_at_90_sensitivity"])
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
    result = runner.invoke(
        app, ["evaluate", "--run", str(tiny_run), "--out", str(tmp_path / "x"), "--data", str(other), "--split", "all"]
    )
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


# ---------------------------------------------------------------------------------------------------------
# Issue 11: what metrics.json says, the ISIC submission beside DermaScan's decision, the locked point
# ---------------------------------------------------------------------------------------------------------


def test_metrics_say_what_is_in_sample_and_keep_threshold_free_figures_apart(evaluated: Path, tmp_path: Path) -> None:
    m = json.loads((evaluated / "metrics.json").read_text())
    # Validation chose the checkpoint, the temperature and the threshold: its figures are in-sample.
    assert "operating_point.validation" in m["in_sample"]["figures"] and m["in_sample"]["out_of_sample"] is True
    assert {"checkpoint selection", "temperature", "threshold"} == set(m["in_sample"]["validation_served"])
    assert m["operating_point"]["validation"]["in_sample"] is True
    # demo.py's readers still find their figures.
    assert 0 <= m["operating_point"]["validation"]["specificity"]["value"] <= 1
    assert m["operating_point"]["validation"]["n_pos"] > 0
    # Specificity at a sensitivity picks its own threshold on this split: apart, and with no threshold to use.
    free = m["threshold_free"]
    for target in (90, 95):
        key = f"specificity_at_{target}_sensitivity"
        assert set(free[key]) == {"value", "lo", "hi", "n"}
        assert key not in m["melanoma"] and key not in m["argmax"]["melanoma"] and "threshold_free" not in m["argmax"]
    assert "not one to use" in free["note"]
    page = (evaluated / "report.html").read_text()
    assert "Threshold-free figures" in page and "in-sample" in page and "decisions.csv" in page
    second = tmp_path / "second"
    shutil.copytree(evaluated, second)
    result = runner.invoke(app, ["compare", str(evaluated), str(second), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "c" / "comparison.csv")
    assert np.allclose(
        table["specificity_at_90_sensitivity"], free["specificity_at_90_sensitivity"]["value"], atol=1e-4
    )
    assert "threshold-free" in (tmp_path / "c" / "comparison.html").read_text()


def test_validation_split_is_marked_in_sample(tiny_run: Path, evaluated: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--run", str(tiny_run), "--out", str(tmp_path / "v"), "--split", "val"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert m["in_sample"]["out_of_sample"] is False and "every figure" in m["in_sample"]["figures"][1]


def test_decision_table_keeps_dermascans_decision_beside_the_isic_argmax() -> None:
    from dermascan.evaluation.evaluate_report import decision_table, submission_table

    probs = np.zeros((2, len(CLASSES)))
    probs[0, [CLASSES.index("MEL"), CLASSES.index("NV")]] = [0.30, 0.70]  # melanoma for us, nevus for ISIC
    probs[1, [CLASSES.index("MEL"), CLASSES.index("NV")]] = [0.20, 0.80]
    submission = submission_table(["a", "b"], probs)
    decisions = decision_table(["a", "b"], probs, 0.25)
    assert list(submission.columns) == ["image", *CLASSES]
    assert list(decisions.columns) == ["image", "decision", "melanoma_flag", "threshold"]
    assert CLASSES[int(np.argmax(submission.loc[0, list(CLASSES)].to_numpy()))] == "NV"
    assert decisions["decision"].tolist() == ["MEL", "NV"] and decisions["melanoma_flag"].tolist() == [True, False]
    assert (decisions["threshold"] == 0.25).all()


def test_decisions_csv_beside_the_submission(evaluated: Path) -> None:
    m = json.loads((evaluated / "metrics.json").read_text())
    submission = pd.read_csv(evaluated / "predictions.csv")
    decisions = pd.read_csv(evaluated / "decisions.csv")
    detail = pd.read_csv(evaluated / "predictions_detail.csv")
    assert list(submission.columns) == ["image", *CLASSES]  # the scorer's file holds nothing else
    assert list(decisions.columns) == ["image", "decision", "melanoma_flag", "threshold"]
    assert decisions["image"].tolist() == submission["image"].tolist()
    assert decisions["decision"].tolist() == [CLASSES[k] for k in detail["pred"]]
    assert (decisions["melanoma_flag"] == (decisions["decision"] == "MEL")).all()
    assert (decisions["threshold"] == m["melanoma"]["threshold"]).all()
    # Its melanoma calls reproduce the "at threshold" sensitivity; the submission's argmax gives the argmax one.
    truth = detail["label"].to_numpy() == 0
    found = (decisions["melanoma_flag"].to_numpy() & truth).sum()
    assert found == m["melanoma"]["counts"]["tp"]
    argmax_found = ((submission[list(CLASSES)].to_numpy().argmax(1) == 0) & truth).sum()
    assert argmax_found == m["argmax"]["melanoma"]["counts"]["tp"]


@pytest.fixture
def run_copy(tiny_run: Path, evaluated: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run with its locked single-view operating point (so tests may change it)."""
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("best.ckpt", "config.yaml", "splits.csv", "operating_point.json"):
        shutil.copy2(tiny_run / name, copy / name)
    return copy


def _point(run: Path) -> dict:
    return json.loads((run / "operating_point.json").read_text())


def test_tta_must_match_the_locked_operating_point(run_copy: Path, tmp_path: Path) -> None:
    from dermascan.decision import apply_temperature
    from dermascan.evaluation.evaluate import _read_for, predict_logits, select, split_predictions
    from dermascan.runs import load_run

    assert _point(run_copy)["tta"] is False
    refused = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--out", str(tmp_path / "a"), "--tta"])
    assert refused.exit_code == 2, refused.output
    assert "single-view" in refused.output and "--recalibrate" in refused.output
    assert not (tmp_path / "a" / "metrics.json").exists()

    relocked = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--out", str(tmp_path / "b"), "--tta",
                                   "--recalibrate"])  # fmt: skip
    assert relocked.exit_code == 0, relocked.output
    assert _point(run_copy)["tta"] is True
    single = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--out", str(tmp_path / "c")])
    assert single.exit_code == 2 and "flip-averaged" in single.output

    # The error and fairness audits predict as the point was fitted: flip-averaged here.
    run = load_run(run_copy)
    index = _read_for(run, None, False)
    frame, point = split_predictions(run, index, "test")
    test = select(index, run.splits, "test")
    with_tta = apply_temperature(predict_logits(run.loaded, test, tta=True), point["temperature"])
    without = apply_temperature(predict_logits(run.loaded, test, tta=False), point["temperature"])
    np.testing.assert_allclose(frame[list(CLASSES)].to_numpy(), with_tta, atol=1e-6)
    assert not np.allclose(with_tta, without, atol=1e-6)


def test_target_and_criterion_flags_are_not_silently_ignored(run_copy: Path, tmp_path: Path) -> None:
    locked = _point(run_copy)
    assert locked["target_sensitivity"] == 0.9 and locked["criterion"] == "point"
    for flags, text in ((["--target-sensitivity", "0.8"], "--target-sensitivity 0.8"), (["--lower-ci"], "lower_ci")):
        result = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--out", str(tmp_path / "x"), *flags])
        assert result.exit_code == 2, result.output
        assert text in result.output and "--recalibrate" in result.output
        assert _point(run_copy) == locked  # nothing was re-fitted or written
    same = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--out", str(tmp_path / "s"),
                               "--target-sensitivity", "0.9"])  # fmt: skip
    assert same.exit_code == 0, same.output  # the locked value itself is fine
    changed = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--out", str(tmp_path / "r"),
                                  "--target-sensitivity", "0.8", "--recalibrate"])  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert _point(run_copy)["target_sensitivity"] == 0.8


def test_fairness_mitigation_uses_the_run_criterion(run_copy: Path, tmp_path: Path) -> None:
    from dermascan.evaluation.evaluate import audit_fairness

    point = _point(run_copy)
    point["criterion"] = "lower_ci"
    (run_copy / "operating_point.json").write_text(json.dumps(point))
    report = audit_fairness(run_copy, tmp_path / "fair", progress=False)
    assert report["settings"]["criterion"] == "lower_ci" and report["mitigation"]["criterion"] == "lower_ci"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ("{}", "has no 'run'"),
        (
            json.dumps({"run": {"arch": "a", "loss": "ce", "class_weighting": None}, "melanoma": {"threshold": "x"}}),
            "melanoma.threshold is 'x', expected a number",
        ),
    ],
    ids=["not-json", "not-an-object", "missing-key", "not-a-number"],
)
def test_compare_on_a_malformed_metrics_file_fails_cleanly(tmp_path: Path, content: str, message: str) -> None:
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "metrics.json").write_text(content)
    result = runner.invoke(app, ["compare", str(folder)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert str(folder / "metrics.json") in result.output and message in result.output
    assert "dermascan evaluate" in result.output and "Traceback" not in result.output
