"""The real training entry point on a tiny data set: train, resume, kill and resume, DDP, weights errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.training.callbacks import HISTORY_KEYS

runner = CliRunner()
DERMASCAN = str(Path(sys.executable).parent / "dermascan")
TINY = ["--preset", "cpu-demo", "--image-size", "32", "--batch-size", "16", "--seed", "1", "--precision", "32-true"]


def _train(*args: str) -> str:
    result = runner.invoke(app, ["train", *TINY, *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_then_resume_through_the_cli(tiny_isic: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train("--data", str(tiny_isic), "--out", str(run), "--epochs", "2")
    splits = pd.read_csv(run / "splits.csv")
    assert list(splits.columns) == ["image_id", "lesion_id", "split"]
    assert (splits.groupby("lesion_id")["split"].nunique() == 1).all()
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 2 and list(history.columns) == list(HISTORY_KEYS)
    assert history["train_loss"].notna().all() and (history["train_loss"] > 0).all()
    _assert_history_is_the_best_checkpoint_on_val(run, tiny_isic, history, splits)
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(run / name, map_location="cpu", weights_only=True)
        assert ckpt["hyper_parameters"]["arch"] == "resnet18"
        assert ckpt["hyper_parameters"]["classes"][0] == "MEL"
    assert (run / "config.yaml").exists()

    assert torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1  # every epoch

    out = _train("--out", str(run), "--epochs", "3", "--resume")
    assert "trained 3 epoch" in out
    rows = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [0, 1, 2]


def _assert_history_is_the_best_checkpoint_on_val(
    run: Path, data: Path, history: pd.DataFrame, splits: pd.DataFrame
) -> None:
    """best.ckpt is the epoch of the highest val_selection, and that row's figures are its own on the val split."""
    from sklearn.metrics import roc_auc_score

    from dermascan.data.readers import read_dataset
    from dermascan.evaluation.evaluate import predict_logits
    from dermascan.evaluation.metrics import specificity_at_sensitivity
    from dermascan.models import load_checkpoint
    from dermascan.training.module import selection_score

    best_epoch = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)["epoch"]
    assert history["val_selection"].idxmax() == best_epoch == history["epoch"][best_epoch]
    row = history.iloc[best_epoch]
    assert row["val_selection"] == pytest.approx(
        selection_score(row["melanoma_specificity_at_target"], row["melanoma_auroc"]), abs=1e-12
    )
    frame = read_dataset(data).subset(splits.loc[splits["split"] == "val", "image_id"]).frame
    logits = torch.as_tensor(predict_logits(load_checkpoint(run / "best.ckpt"), frame))  # (N, K)
    probs, y = logits.softmax(1).numpy(), frame["label"].to_numpy()
    is_mel = (y == 0).astype(int)
    assert 0 < is_mel.sum() < len(y)  # the figures below are defined
    assert row["melanoma_auroc"] == pytest.approx(roc_auc_score(is_mel, probs[:, 0]), abs=1e-6)
    assert row["val_accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()), abs=1e-6)
    assert row["melanoma_specificity_at_target"] == pytest.approx(
        specificity_at_sensitivity(is_mel, probs[:, 0], 0.90)[0], abs=1e-6
    )
    assert row["val_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor(y))), rel=1e-4)


class _InterruptError(Exception):
    pass


class _StopAfterFirstEpoch(L.Callback):
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch == 1:  # epoch 0 is checkpointed; die at the first step of epoch 1
            raise _InterruptError


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["plain", "weight-averaged"])
def test_resumed_run_ends_where_an_uninterrupted_run_would(tiny_config, tmp_path: Path, ema_decay: float) -> None:
    from dermascan.training.train import train

    def config(out: str):
        return tiny_config(Path(out).name, epochs=3, ema_decay=ema_decay)

    train(config(str(tmp_path / "a")), progress=False)
    with pytest.raises(_InterruptError):  # dies after epoch 0, like a killed job
        train(config(str(tmp_path / "b")), progress=False, callbacks=[_StopAfterFirstEpoch()])
    train(config(str(tmp_path / "b")), resume=True, progress=False)
    a = json.loads((tmp_path / "a" / "history.json").read_text())
    b = json.loads((tmp_path / "b" / "history.json").read_text())
    for ra, rb in zip(a, b, strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-4)


class _FirstEpochScoresBest(L.Callback):
    """Epoch 0 gets the top validation selection score, whatever the model did (checkpoint callbacks run after)."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.callback_metrics["val_selection"] = torch.tensor(1.0 if trainer.current_epoch == 0 else 0.0)


@pytest.mark.parametrize(("checkpoint", "shipped_epoch"), [("best", 0), ("last", 2)])
def test_checkpoint_decides_which_epoch_best_ckpt_ships(
    tiny_config, tmp_path: Path, checkpoint: str, shipped_epoch: int
) -> None:
    from dermascan.training.train import train

    run = tmp_path / "run"
    train(tiny_config(epochs=3, checkpoint=checkpoint), progress=False, callbacks=[_FirstEpochScoresBest()])
    best, last = (torch.load(run / n, map_location="cpu", weights_only=True) for n in ("best.ckpt", "last.ckpt"))
    assert best["epoch"] == shipped_epoch and last["epoch"] == 2
    same = all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())
    assert same == (checkpoint == "last")


def test_existing_run_needs_resume_and_resume_needs_a_run(tiny_isic: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", *TINY, "--data", str(tiny_isic), "--out", str(tmp_path / "x"), "--resume"])
    assert result.exit_code == 2 and "cannot resume" in result.output
    result = runner.invoke(app, ["train", "--preset", "nope", "--data", str(tiny_isic)])
    assert result.exit_code == 2 and "cpu-demo" in result.output


def test_imagenet_weights_offline_fail_fast_with_the_fix(tiny_isic: Path, tmp_path: Path, monkeypatch) -> None:
    """How fast it fails is measured by benchmarks/bench_offline.py; here: it fails before any data work."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: the download is attempted
    result = runner.invoke(
        app, ["train", *TINY, "--data", str(tiny_isic), "--out", str(tmp_path / "w"), "--weights", "imagenet"]
    )
    assert result.exit_code == 2
    assert "--weights" in result.output and ".pth" in result.output
    assert not (tmp_path / "w" / "splits.csv").exists()  # the model is built first: no data was read or split


def test_local_weights_file(tiny_isic: Path, tmp_path: Path) -> None:
    from dermascan.models import create_model

    path = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18", weights="none").state_dict(), path)
    _train("--data", str(tiny_isic), "--out", str(tmp_path / "w"), "--epochs", "1", "--weights", str(path))


def test_non_finite_loss_stops_with_a_message() -> None:
    from torch import nn

    from dermascan.models import create_model
    from dermascan.training.config import TrainConfig
    from dermascan.training.module import LesionClassifier, NonFiniteLossError

    class NanLoss(nn.Module):
        def forward(self, logits, y):
            return logits.sum() * float("nan")

    module = LesionClassifier(create_model("resnet18", weights="none"), NanLoss(), TrainConfig(data="x"), {})
    with pytest.raises(NonFiniteLossError, match="lower --lr"):
        module.training_step((torch.randn(2, 3, 32, 32), torch.tensor([0, 1])), 0)


@pytest.mark.slow
def test_kill_mid_epoch_then_resume(tiny_isic: Path, tmp_path: Path) -> None:
    """kill -9 in the middle of an epoch: last.ckpt stays loadable and --resume finishes the run."""
    run = tmp_path / "k"
    cmd = [
        DERMASCAN,
        "train",
        *TINY,
        "--data",
        str(tiny_isic),
        "--out",
        str(run),
        "--epochs",
        "40",
        "--batch-size",
        "4",
        "--image-size",
        "48",
        "--patience",
        "40",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "last.ckpt").exists():
            time.sleep(0.2)
        assert (run / "last.ckpt").exists(), "first epoch never finished"
        time.sleep(0.7)  # well into the next epoch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)
    done = ckpt["epoch"]
    result = subprocess.run(
        [DERMASCAN, "train", "--out", str(run), "--epochs", str(done + 2), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in rows] == list(range(done + 2))


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_isic: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    result = subprocess.run(
        [
            DERMASCAN,
            "train",
            *TINY,
            "--data",
            str(tiny_isic),
            "--out",
            str(run),
            "--epochs",
            "1",
            "--devices",
            "2",
            "--accelerator",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_size: 2" in result.stderr or "Initializing distributed: GLOBAL_RANK: 1" in result.stderr
    assert len(pd.read_csv(run / "history.csv")) == 1


def test_official_validation_and_test_folders_are_used_whole(tiny_isic: Path, tmp_path: Path) -> None:
    from tests.conftest import write_tiny_isic

    val = write_tiny_isic(tmp_path / "val", per_class=3, first_id=1000)
    test = write_tiny_isic(tmp_path / "test", per_class=3, first_id=2000)
    run = tmp_path / "official"
    _train(
        "--data", str(tiny_isic), "--val-data", str(val), "--test-data", str(test), "--out", str(run), "--epochs", "1"
    )
    splits = pd.read_csv(run / "splits.csv")
    assert set(splits.loc[splits["split"] == "val", "image_id"]) == {f"ISIC_{1000 + i:07d}" for i in range(21)}
    assert set(splits.loc[splits["split"] == "test", "image_id"]) == {f"ISIC_{2000 + i:07d}" for i in range(21)}
    assert set(splits.loc[splits["split"] == "train", "image_id"]) == {f"ISIC_{i:07d}" for i in range(42)}
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "e" / "predictions.csv")) == 21


def test_a_class_with_one_lesion_is_trained_on_and_the_shortage_is_said(
    tiny_isic: Path, tmp_path: Path, tiny_config
) -> None:
    """DF with a single lesion used to go to test only, train had no DF image, and the warning was silenced."""
    from dermascan.data.splits import SplitWarning
    from dermascan.training.train import train

    meta = pd.read_csv(tiny_isic / "HAM10000_metadata.csv")
    df_lesions = meta.loc[meta["dx"] == "df", "lesion_id"]
    dropped = meta.loc[(meta["dx"] == "df") & (meta["lesion_id"] != df_lesions.iloc[0]), "image_id"]  # DF: 1 lesion
    for name, key in (("ISIC2018_Task3_GroundTruth.csv", "image"), ("HAM10000_metadata.csv", "image_id")):
        table = pd.read_csv(tiny_isic / name)
        table[~table[key].isin(dropped)].to_csv(tiny_isic / name, index=False)
    cfg = tiny_config("r", epochs=1)
    with pytest.warns(SplitWarning, match=r"class DF has only 1 lesion\(s\) \(2 image\(s\)\): no test or val"):
        train(cfg, progress=False)
    splits = pd.read_csv(tmp_path / "r" / "splits.csv").merge(
        pd.read_csv(tiny_isic / "HAM10000_metadata.csv"), on="image_id"
    )
    assert splits.loc[splits["dx"] == "df", "split"].tolist() == ["train", "train"]
    meta = torch.load(tmp_path / "r" / "best.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]
    df = meta["classes"].index("DF")
    assert meta["train_class_counts"][df] == 2 and meta["class_weights"][df] > 0
