"""The command line as a user runs it (through typer's runner, in-process)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dermascan.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "eda"):
        assert command in result.output


def test_eda_command(tiny_isic: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eda", "--data", str(tiny_isic), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert "42 images" in result.output
    assert json.loads((tmp_path / "e" / "eda.json").read_text())["n_images"] == 42


def test_eda_on_a_bad_folder_fails_cleanly(tiny_isic: Path, tmp_path: Path) -> None:
    (tiny_isic / "images" / "ISIC_0000007.jpg").unlink()
    result = runner.invoke(app, ["eda", "--data", str(tiny_isic), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "ISIC_0000007" in result.output and "--skip-bad" in result.output
    result = runner.invoke(app, ["eda", "--data", str(tiny_isic), "--out", str(tmp_path / "e"), "--skip-bad"])
    assert result.exit_code == 0 and "skipped 1" in result.output


def test_explain_command(tiny_run: Path, synth_small: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = sorted((synth_small / "images").iterdir())[0]
    result = runner.invoke(
        app, ["explain", "--run", str(tiny_run), "--image", str(image), "--out", str(tmp_path / "h.png")]
    )
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "h.png").size == Image.open(image).size
    # the answer is the Predictor's: calibrated and decided at the locked threshold (or said to be uncalibrated)
    assert "flagged" in result.output and ("risk" in result.output or "uncalibrated" in result.output)
    bad = runner.invoke(app, ["explain", "--run", str(tiny_run), "--image", str(image), "--method", "rollout"])
    assert bad.exit_code == 2 and "gradcam" in bad.output


def test_synth_twice_is_byte_identical(tmp_path: Path) -> None:
    import hashlib

    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    for name in ("a", "b"):
        result = runner.invoke(
            app, ["synth", "--out", str(tmp_path / name), "--n", "40", "--size", "48", "--seed", "3", "--workers", "1"]
        )
        assert result.exit_code == 0, result.output
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and len(digest(tmp_path / "a")) == 2 * 40 + 2
    again = runner.invoke(app, ["synth", "--out", str(tmp_path / "a"), "--n", "4", "--size", "48"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_export_predict_and_bench_commands(tiny_run: Path, synth_small: Path, tmp_path: Path) -> None:
    import json

    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["export", "--run", str(tiny_run), "--out", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "parity on" in result.output and (bundle / "manifest.json").exists()
    assert "parity" in result.stderr  # progress of the parity passes

    good = sorted((synth_small / "images").iterdir())[:2]
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    result = runner.invoke(
        app,
        [
            "predict",
            "--bundle",
            str(bundle),
            *map(str, good),
            str(tmp_path / "bad.jpg"),
            "--heatmap",
            str(tmp_path / "maps"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # stdout is JSON lines only
    assert [Path(d["image"]).name for d in lines] == [good[0].name, good[1].name, "bad.jpg"]
    assert "predicting" in result.stderr and "3/3" in result.stderr  # the progress bar is on stderr
    assert set(lines[0]["probabilities"]) == {"MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"}
    assert 0 <= lines[0]["melanoma_risk"] <= 1 and isinstance(lines[0]["melanoma_flag"], bool)
    assert "error" in lines[2] and Path(lines[0]["heatmap"]).exists()

    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes()[:-1] + b"\0")
    tampered = runner.invoke(app, ["predict", "--bundle", str(bundle), str(good[0])])
    assert tampered.exit_code == 2 and "model.onnx" in tampered.output


def test_bench_command(tiny_run: Path, tmp_path: Path) -> None:
    import json

    runner.invoke(app, ["export", "--run", str(tiny_run), "--out", str(tmp_path / "b")])
    result = runner.invoke(
        app,
        [
            "bench",
            "--bundle",
            str(tmp_path / "b"),
            "--runtime",
            "onnxruntime",
            "--repeats",
            "3",
            "--out",
            str(tmp_path / "bench.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report and "onnxruntime" in result.output and "torch" in result.output


def test_errors_and_fairness_commands(tiny_run: Path, tmp_path: Path) -> None:
    import json

    result = runner.invoke(app, ["errors", "--run", str(tiny_run), "--out", str(tmp_path / "err")])
    assert result.exit_code == 0, result.output
    errors = json.loads((tmp_path / "err" / "errors.json").read_text())
    assert errors["n_false_negatives"] == len(errors["false_negatives"])
    assert errors["by_size"]["source"] == "diameter_mm" and (tmp_path / "err" / "gallery.png").exists()

    result = runner.invoke(app, ["fairness", "--run", str(tiny_run), "--out", str(tmp_path / "fair")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "fair" / "fairness.json").read_text())
    groups = report["attributes"]["fitzpatrick"]["groups"]
    assert set(groups) <= {"I", "II", "III", "IV", "V", "VI"}
    for g in groups.values():
        assert {"sensitivity", "specificity", "auroc", "flag", "significant", "status"} <= set(g)
    assert report["summary"] and (tmp_path / "fair" / "fairness.html").exists()


def test_metadata_option_keeps_lesion_grouping_through_train_and_the_audits(tmp_path: Path) -> None:
    import pandas as pd
    import yaml
    from tests.conftest import write_ham_image_folder

    folder = write_ham_image_folder(tmp_path / "ham", per_class=6, metadata_name=None)
    metadata = tmp_path / "ham-isic" / "HAM10000_metadata.csv"  # not in the folder: only --metadata finds it

    result = runner.invoke(
        app, ["eda", "--data", str(folder), "--out", str(tmp_path / "e"), "--metadata", str(metadata)]
    )
    assert result.exit_code == 0, result.output
    eda = json.loads((tmp_path / "e" / "eda.json").read_text())
    assert eda["lesions"]["lesion_ids_available"] and eda["lesions"]["n_lesions"] == 3 * 7
    assert "sex" in eda["metadata"]

    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "--preset",
            "cpu-demo",
            "--data",
            str(folder),
            "--metadata",
            str(metadata),
            "--out",
            str(run),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--batch-size",
            "16",
            "--precision",
            "32-true",
        ],
    )
    assert result.exit_code == 0, result.output
    splits = pd.read_csv(run / "splits.csv")
    assert splits["lesion_id"].str.startswith("HAM_").all() and splits["lesion_id"].nunique() == 21
    assert yaml.safe_load((run / "config.yaml").read_text())["metadata"] == str(metadata)

    # fairness re-reads the run's data with the run's own metadata: the patient attributes are there.
    result = runner.invoke(app, ["fairness", "--run", str(run), "--out", str(tmp_path / "fair"), "--split", "all"])
    assert result.exit_code == 0, result.output
    attributes = json.loads((tmp_path / "fair" / "fairness.json").read_text())["attributes"]
    assert {"sex", "localization"} <= set(attributes)

    bad = runner.invoke(
        app, ["eda", "--data", str(folder), "--out", str(tmp_path / "e2"), "--metadata", str(tmp_path / "nope.csv")]
    )
    assert bad.exit_code == 2 and "nope.csv does not exist" in bad.output
    for command in ("evaluate", "errors", "fairness"):  # not a run folder: a clear error, not a traceback
        bad = runner.invoke(
            app, [command, "--run", str(folder), "--out", str(tmp_path / "x"), "--metadata", str(metadata)]
        )
        assert bad.exit_code == 2 and "run folder" in bad.output, (command, bad.output)


def test_train_help_and_presets_name_the_briefs_class_weights_as_the_baseline() -> None:
    import re
    from importlib import resources

    import yaml

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"[\s│]+", " ", result.output)  # rich wraps help text inside a box
    assert "inverse (the brief's baseline, N / (K N_i))" in text and "sqrt_inverse (its square root" in text
    for preset in resources.files("dermascan.configs").iterdir():
        if preset.name.endswith(".yaml"):
            source = preset.read_text()
            weighting = yaml.safe_load(source)["class_weighting"]
            assert (
                weighting == "uniform"
                or "the brief's inverse N / (K N_i)" in source
                or ("the brief's N / (K N_i) (the baseline)" in source)
            ), preset.name


def test_demo_quick_honours_variant_epochs_size_and_no_audit(tmp_path: Path, monkeypatch) -> None:
    """--quick used to replace the whole config, silently dropping --variant, --epochs, --n-images, --no-audit."""
    import dermascan.demo

    seen = []
    monkeypatch.setattr(dermascan.demo, "run_demo", lambda out, cfg, echo: seen.append(cfg))  # no training here
    args = ["demo", "--out", str(tmp_path / "d"), "--quick"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(
        app, [*args, "--variant", "cnn_ce", "--epochs", "2", "--n-images", "120", "--no-audit", "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    quick, flagged = seen
    assert (quick.n_images, quick.epochs, quick.size, quick.audit) == (300, 1, 48, True)
    assert len(quick.variants) == 4
    assert (flagged.n_images, flagged.epochs, flagged.seed, flagged.audit) == (120, 2, 4, False)
    assert flagged.variants == ("cnn_ce",) and (flagged.size, flagged.image_size) == (48, 32)  # still quick sizes
    assert runner.invoke(app, ["demo", "--out", str(tmp_path / "d")]).exit_code == 0
    assert (seen[-1].n_images, seen[-1].epochs, seen[-1].size) == (8000, 8, 96)

    bad = runner.invoke(app, [*args, "--variant", "cnn_nope"])
    assert bad.exit_code == 2 and "cnn_nope" in bad.output and "cnn_focal_sqrt" in bad.output
    bad = runner.invoke(app, [*args, "--epochs", "0"])
    assert bad.exit_code == 2 and "epochs" in bad.output


def test_cli_choices_are_the_librarys_own() -> None:
    """A Literal choice of the CLI must list exactly what the library accepts (they are written twice)."""
    from typing import get_args

    from dermascan.cli import _app
    from dermascan.evaluation.evaluate import SPLIT_CHOICES
    from dermascan.explain.run import METHODS
    from dermascan.inference.bundle import MODEL_FORMATS, PRECISIONS
    from dermascan.inference.runtimes import RUNTIMES
    from dermascan.scoring.score import ENGINES
    from dermascan.training import config

    assert get_args(_app.Split) == SPLIT_CHOICES
    assert get_args(_app.Method) == METHODS
    assert get_args(_app.ModelFormat) == MODEL_FORMATS
    assert get_args(_app.BundlePrecision) == PRECISIONS
    assert get_args(_app.Runtime) == ("auto", *RUNTIMES)
    assert get_args(_app.Engine) == ENGINES
    assert get_args(_app.Loss) == config.LOSSES
    assert get_args(_app.Weighting) == config.WEIGHTINGS
    assert get_args(_app.Sampler) == config.SAMPLERS
    assert get_args(_app.Checkpoint) == config.CHECKPOINTS
    assert get_args(_app.TrainPrecision) == config.PRECISIONS


def test_train_options_are_the_train_config_fields() -> None:
    import dataclasses
    import inspect

    from dermascan.cli.training import ASSEMBLY_OPTIONS, YAML_ONLY_FIELDS, train
    from dermascan.training.config import TrainConfig

    options = set(inspect.signature(train).parameters)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert options - set(ASSEMBLY_OPTIONS) == fields - set(YAML_ONLY_FIELDS)


def test_bad_choice_and_user_errors_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    bad_choice = runner.invoke(
        app, ["evaluate", "--run", str(tmp_path), "--out", str(tmp_path / "e"), "--split", "holdout"]
    )
    assert bad_choice.exit_code == 2 and "holdout" in bad_choice.output
    not_a_run = runner.invoke(app, ["explain", "--run", str(tmp_path), "--image", str(tmp_path / "x.jpg")])
    assert not_a_run.exit_code == 2 and not_a_run.output.startswith("error: ")
    assert "Traceback" not in not_a_run.output and "dermascan train" in not_a_run.output


def test_serve_refuses_a_shadow_share_without_a_challenger(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--dev", "--shadow-share", "0.1"])
    assert result.exit_code == 2, result.output
    assert "--challenger" in result.output and "Traceback" not in result.output


def test_serve_help_shows_the_defaults_it_names() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())  # the help box wraps lines
    assert "(default 127.0.0.1)" in text and "(default 8; 1: off)" in text
