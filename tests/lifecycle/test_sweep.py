"""A 3-trial sweep at toy size: trials table, importance plot, a best preset that trains, validation only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.training.config import TrainConfig

pytestmark = pytest.mark.slow  # three tiny training runs: ~30 s

runner = CliRunner()


def test_three_trial_sweep(synth_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(synth_small), "--trials", "3", "--out", str(out), "--epochs", "2"]
    result = runner.invoke(app, [*args, "--batch-size", "32", "--image-sizes", "32,40"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and {"params_lr", "params_focal_gamma", "params_image_size", "value"} <= set(trials)
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) >= 2 and done["value"].between(0, 1).all()
    assert (out / "importance.png").stat().st_size > 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    cfg = TrainConfig.from_dict(best)
    assert cfg.lr == pytest.approx(done.loc[done["value"].idxmax(), "params_lr"])
    assert "data" not in best and "out" not in best
    # each trial is a real run folder, on one shared split
    splits = [pd.read_csv(p) for p in sorted((out / "trials").glob("*/splits.csv"))]
    assert len(splits) == 3 and all(s.equals(splits[0]) for s in splits)
    # a second worker joins the same study through the storage
    more = runner.invoke(app, [*args, "--trials", "1", "--batch-size", "32", "--image-sizes", "32,40"])
    assert more.exit_code == 0, more.output
    assert len(pd.read_csv(out / "trials.csv")) == 4
