"""Lesion-grouped k-fold cross-validation: the folds, and `dermascan cv` end to end at toy size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.crossval import CVConfig
from dermascan.data.readers import read_dataset
from dermascan.data.splits import make_fold_splits, read_splits
from dermascan.decision import apply_temperature
from dermascan.errors import ConfigError
from dermascan.evaluation.evaluate import predict_logits, select
from dermascan.runs import load_run
from dermascan.taxonomy import MELANOMA_INDEX


def _frame(n_lesions: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for lesion in range(n_lesions):
        dx = rng.choice(["MEL", "NV", "BCC", "BKL"], p=[0.2, 0.6, 0.1, 0.1])
        rows += [{"image_id": f"i{lesion}-{k}", "lesion_id": f"l{lesion}", "dx": dx} for k in range(rng.integers(1, 4))]
    return pd.DataFrame(rows)


def test_every_lesion_is_tested_once_and_never_beside_its_own_training() -> None:
    frame = _frame()
    folds = [make_fold_splits(frame, 5, k, seed=3) for k in range(5)]
    tested = pd.concat([f[f["split"] == "test"] for f in folds])
    assert sorted(tested["image_id"]) == sorted(frame["image_id"])  # every image scored exactly once
    for f in folds:
        per_lesion = f.groupby("lesion_id")["split"].nunique()
        assert (per_lesion == 1).all()  # a lesion sits in one split of a fold
        counts = f["split"].value_counts(normalize=True)
        assert 0.65 < counts["train"] < 0.75 and 0.07 < counts["val"] < 0.13 and 0.17 < counts["test"] < 0.23
        # each class in its share in the validation and test splits (stratified), melanoma included
        for split in ("val", "test"):
            held = f[f["split"] == split].merge(frame, on=["image_id", "lesion_id"])
            assert abs((held["dx"] == "MEL").mean() - (frame["dx"] == "MEL").mean()) < 0.06, split
    assert make_fold_splits(frame, 5, 2, seed=3).equals(folds[2])  # the seed decides
    assert not make_fold_splits(frame, 5, 2, seed=4).equals(folds[2])


def test_bad_fold_arguments_are_named() -> None:
    frame = _frame(20)
    with pytest.raises(ValueError, match="at least 2 folds"):
        make_fold_splits(frame, 1, 0)
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        make_fold_splits(frame, 5, 5)
    with pytest.raises(ConfigError, match="--fold must name folds"):
        CVConfig(data="d", out="o", folds=3, only=(3,))
    with pytest.raises(ConfigError, match="set by the cross-validation"):
        CVConfig(data="d", out="o", train={"val_fraction": 0.2})


def test_reused_folds_may_only_change_which_epoch_they_ship(tmp_path: Path) -> None:
    (tmp_path / "ref" / "fold0" / "run").mkdir(parents=True)
    (tmp_path / "ref" / "fold0" / "run" / "last.ckpt").write_bytes(b"")
    reuse = {"data": "d", "out": str(tmp_path / "o"), "models_from": str(tmp_path / "ref")}
    CVConfig(**reuse, train={"checkpoint": "last"})  # read off the checkpoints: nothing is retrained
    with pytest.raises(ConfigError, match=r"training options \(epochs\) cannot change them"):
        CVConfig(**reuse, train={"checkpoint": "last", "epochs": 3})


@pytest.mark.slow
def test_cv_command_trains_each_fold_and_pools_the_scored_halves(synth_small: Path, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("batch_size: 32\nprecision: 32-true\n")
    out = tmp_path / "cv"
    args = ["cv", "--data", str(synth_small), "--out", str(out), "--folds", "3", "--preset", "cpu-demo",
            "--config", str(tmp_path / "recipe.yaml"), "--image-size", "32", "--epochs", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "melanoma AUROC" in result.output and "validation figures over 3 fold(s)" in result.output
    summary = json.loads((out / "cv.json").read_text())
    assert summary["recipe"]["image_size"] == 32 and summary["recipe"]["epochs"] == 1
    assert [r["fold"] for r in summary["folds"]] == [0, 1, 2]
    assert all(r["minutes"] is not None and r["minutes"] > 0 for r in summary["folds"])
    pooled = summary["pooled"]
    n_images = len(read_dataset(synth_small, progress=False).frame)
    assert pooled["n_images"] == n_images == sum(r["n_images"] for r in summary["folds"])  # each scored once
    for key in ("auroc", "spec_at_90", "spec_at_95", "sensitivity", "specificity", "balanced_accuracy"):
        lo, hi = pooled["intervals"][key]
        assert lo <= pooled[key] <= hi, key
    scored = pd.read_csv(out / "predictions.csv")
    assert scored["image_id"].is_unique and len(scored) == n_images
    assert "| melanoma AUROC |" in (out / "cv.md").read_text() and "3 folds by lesion" in (out / "cv.md").read_text()
    assert "1 epochs (the best-scoring one shipped)" in (out / "cv.md").read_text()  # cpu-demo's checkpoint: best

    # resumed: a finished fold is not trained again (its minutes come from the first run)
    again = CliRunner().invoke(app, [*args, "--fold", "1"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "cv.json").read_text())["folds"][0]["minutes"] == summary["folds"][1]["minutes"]
    assert "1 of 3 folds by lesion (a quick look)" in (out / "cv.md").read_text()

    # another recipe against this one: paired on the images both scored (fold 1 here)
    other = tmp_path / "cv2"
    args2 = [*args[:4], str(other), *args[5:-1], "2", "--fold", "1", "--against", str(out)]
    result = CliRunner().invoke(app, args2)
    assert result.exit_code == 0, result.output
    assert f"against {out}: AUROC" in result.output
    versus = json.loads((other / "cv.json").read_text())["against"]
    assert versus["n_images"] == summary["folds"][1]["n_images"]
    for key in ("auroc", "spec_at_90", "spec_at_95"):
        lo, hi = versus[key]["interval"]
        assert lo <= versus[key]["difference"] <= hi, key
    assert "paired on the" in (other / "cv.md").read_text()
    missing = CliRunner().invoke(app, [*args2[:-1], str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no predictions.csv" in missing.output

    # the same trained folds, another decision policy (flip TTA): nothing retrained, the source left as it was
    point = (out / "fold1" / "run" / "operating_point.json").read_text()
    tta = tmp_path / "cv-tta"
    args3 = ["cv", "--data", str(synth_small), "--out", str(tta), "--folds", "3", "--fold", "1", "--preset",
             "cpu-demo", "--tta", "--models-from", str(out), "--against", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args3)
    assert result.exit_code == 0, result.output
    reused = json.loads((tta / "cv.json").read_text())
    assert reused["config"]["tta"] and reused["folds"][0]["minutes"] == summary["folds"][1]["minutes"]
    assert (tta / "fold1" / "run" / "last.ckpt").is_symlink()
    assert json.loads((tta / "fold1" / "run" / "operating_point.json").read_text())["tta"] is True
    assert (out / "fold1" / "run" / "operating_point.json").read_text() == point
    assert "flip test-time augmentation" in (tta / "cv.md").read_text()
    ours, theirs = (pd.read_csv(d / "predictions.csv").set_index("image_id").sort_index() for d in (tta, out))
    assert not np.allclose(ours["p_melanoma"], theirs.loc[ours.index, "p_melanoma"])  # other views were scored
    # the other recipe's trained fold shipping its last epoch (checkpoint: last): read off the checkpoints, not trained
    (tmp_path / "last.yaml").write_text("checkpoint: last\n")
    last = tmp_path / "cv-last"
    args_last = ["cv", "--data", str(synth_small), "--out", str(last), "--folds", "3", "--fold", "1", "--preset",
                 "cpu-demo", "--config", str(tmp_path / "last.yaml"), "--models-from", str(other)]  # fmt: skip
    result = CliRunner().invoke(app, args_last)
    assert result.exit_code == 0, result.output
    shipped = last / "fold1" / "run"
    assert (shipped / "best.ckpt").resolve() == (other / "fold1" / "run" / "last.ckpt").resolve()
    assert yaml.safe_load((shipped / "config.yaml").read_text())["checkpoint"] == "last"
    assert "checkpoint: last" in (last / "cv.md").read_text()
    # ...and back is refused: a run that shipped its last epoch never saved the best-scoring one
    (tmp_path / "best.yaml").write_text("checkpoint: best\n")
    back = [
        *args_last[:4],
        str(tmp_path / "cv-back"),
        *args_last[5:12],
        str(tmp_path / "best.yaml"),
        "--models-from",
        str(last),
    ]
    refused = CliRunner().invoke(app, back)
    assert refused.exit_code == 2 and "best selection score were never saved" in refused.output, refused.output
    # refused: training options beside reused models, folds of another seed, an unfinished source
    for extra, message in (
        (["--epochs", "3"], "training options (epochs) cannot change them"),
        (["--seed", "1", "--out", str(tmp_path / "cv-seed")], "trained on other folds"),
    ):
        refused = CliRunner().invoke(app, [*args3, *extra])
        assert refused.exit_code == 2 and message in refused.output, (extra, refused.output)
    half = tmp_path / "half"
    (half / "fold1" / "run").mkdir(parents=True)
    (half / "fold1" / "run" / "last.ckpt").write_bytes(b"")  # a training that never finished
    args4 = [*args3[:4], str(tmp_path / "cv-half"), *args3[5:13], str(half)]
    refused = CliRunner().invoke(app, args4)
    assert refused.exit_code == 2 and "no finished fold 1" in refused.output, refused.output

    # an ensemble of the two recipes' fold-1 models: nothing trained, each image scored by the mean of their logits
    ens = tmp_path / "cv-ens"
    args5 = ["cv", "--data", str(synth_small), "--out", str(ens), "--folds", "3", "--fold", "1", "--preset",
             "cpu-demo", "--ensemble", str(out), "--ensemble", str(other), "--against", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args5)
    assert result.exit_code == 0, result.output
    assert not (ens / "fold1" / "run").exists()
    summary_ens = json.loads((ens / "cv.json").read_text())
    member_minutes = [json.loads((d / "cv.json").read_text())["folds"][-1]["minutes"] for d in (out, other)]
    assert summary_ens["folds"][0]["minutes"] == pytest.approx(sum(member_minutes), abs=0.02)
    point = json.loads((ens / "fold1" / "eval" / "operating_point.json").read_text())
    index = read_dataset(synth_small, progress=False)
    test = select(index, read_splits(out / "fold1" / "run" / "splits.csv"), "test")
    logits = np.mean([predict_logits(load_run(d / "fold1" / "run").loaded, test) for d in (out, other)], axis=0)
    expected = apply_temperature(logits, point["temperature"])[:, MELANOMA_INDEX]
    scored = pd.read_csv(ens / "predictions.csv").set_index("image_id").loc[test["image_id"]]
    np.testing.assert_allclose(scored["p_melanoma"], expected, atol=2e-6)
    assert "an ensemble: the mean logits of" in (ens / "cv.md").read_text()
    for extra, message in ((["--epochs", "3"], "leave out --models-from and training options (epochs)"),):
        refused = CliRunner().invoke(app, [*args5, *extra])
        assert refused.exit_code == 2 and message in refused.output, (extra, refused.output)
    alone = CliRunner().invoke(app, [*args5[:-4], "--against", str(out)])
    assert alone.exit_code == 2 and "at least two" in alone.output, alone.output
