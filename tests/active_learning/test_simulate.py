"""The simulation end to end at toy size, its report's arithmetic, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dermascan.active_learning.report import labels_to_reach, summarise
from dermascan.active_learning.simulate import SimulationConfig, simulate
from dermascan.cli import app
from dermascan.errors import ConfigError


def test_labels_to_reach_interpolates_and_needs_the_curve_to_stay() -> None:
    labels = np.array([100.0, 200.0, 300.0, 400.0])
    assert labels_to_reach(labels, np.array([0.5, 0.6, 0.7, 0.8]), 0.65) == pytest.approx(250.0)
    assert labels_to_reach(labels, np.array([0.9, 0.9, 0.9, 0.9]), 0.65) == 100.0
    # Touching the target once and falling back is not reaching it: the crossing after the last dip counts.
    assert labels_to_reach(labels, np.array([0.5, 0.7, 0.6, 0.8]), 0.65) == pytest.approx(325.0)
    assert labels_to_reach(labels, np.array([0.5, 0.9, 0.9, 0.6]), 0.65) == float("inf")


def _points(curves: dict[str, list[list[float]]], labels=(300, 500, 700)) -> pd.DataFrame:
    rows = []
    for strategy, per_repeat in curves.items():
        for r, curve in enumerate(per_repeat):
            for n, v in zip(labels, curve, strict=True):
                rows.append(
                    {
                        "repeat": r,
                        "strategy": strategy,
                        "round": labels.index(n),
                        "labels": n,
                        "melanomas_labelled": n // 10,
                        "auroc": v,
                        "specificity": v / 2,
                        "balanced_accuracy": 0.3,
                        "threshold": 0.2,
                    }
                )
    return pd.DataFrame(rows)


def test_summary_reads_the_saving_off_the_curves() -> None:
    # random ends at 0.80 on average; "fast" reaches 0.80 at 500 labels in both repeats, "slow" never does.
    points = _points(
        {
            "random": [[0.6, 0.7, 0.79], [0.6, 0.72, 0.81]],
            "fast": [[0.6, 0.80, 0.85], [0.6, 0.80, 0.86]],
            "slow": [[0.6, 0.62, 0.70], [0.6, 0.63, 0.71]],
        }
    )
    summary = summarise(points, {"label_cost": 85.0})
    block = summary["metrics"]["auroc"]
    assert block["target"] == pytest.approx(0.80)
    fast, slow, rnd = (block["strategies"][k] for k in ("fast", "slow", "random"))
    assert fast["labels_needed"] == pytest.approx(500.0)
    assert fast["saving_labels"]["value"] == pytest.approx(200.0)
    assert fast["saving_dollars"]["value"] == pytest.approx(200.0 * 85)
    assert fast["saving_fraction"]["value"] == pytest.approx(200.0 / 400.0)  # of the 400 acquired after the seed
    assert fast["saving_labels"]["lo"] <= 200.0 <= fast["saving_labels"]["hi"]
    assert not slow["reached"] and slow["labels_needed"] is None
    assert slow["saving_labels"]["value"] is None  # not reached: a negative saving of unknown size
    assert rnd["labels_needed"] == pytest.approx(700.0)
    assert summary["headline"]["strategy"] == "fast"
    assert summary["melanomas_labelled_at_budget"]["fast"] == 70


def test_bad_simulation_config() -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        SimulationConfig(data="d", out="o", strategies=("entropy", "guess"))
    with pytest.raises(ConfigError, match="rounds must be >= 1"):
        SimulationConfig(data="d", out="o", rounds=0)
    assert SimulationConfig(data="d", out="o", strategies=("bald",)).strategies == ("random", "bald")


def test_a_pool_too_small_for_the_budget_is_refused(synth_small: Path, tmp_path: Path) -> None:
    config = SimulationConfig(data=str(synth_small), out=str(tmp_path), seed_labels=100, round_size=50, rounds=2)
    with pytest.raises(ConfigError, match="fewer than the 200 labels"):
        simulate(config, progress=False)


@pytest.mark.slow
def test_toy_simulation_end_to_end(synth_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    config = SimulationConfig(
        data=str(synth_small),
        out=str(out),
        seed_labels=30,
        round_size=20,
        rounds=1,
        repeats=2,
        strategies=("kcenter",),
        seed_epochs=1,
        round_epochs=1,
        batch_size=32,
        extra_train={"precision": "32-true"},
    )
    summary = simulate(config, progress=False)
    points = pd.read_csv(out / "points.csv")
    assert len(points) == 2 * 2 * 2  # repeats x strategies x (seed + 1 round)
    assert sorted(points["labels"].unique().tolist()) == [30, 50]
    # Both strategies start from the same seed model in each repeat.
    seed = points[points["round"] == 0].groupby("repeat")["auroc"].nunique()
    assert (seed == 1).all()
    picks = pd.read_csv(out / "picks.csv")
    assert len(picks) == 2 * 2 * 20
    assert not picks.duplicated(["repeat", "strategy", "image_id"]).any()
    splits = pd.read_csv(synth_small / "metadata.csv")
    assert set(picks["image_id"]) <= set(splits["image_id"])
    report = json.loads((out / "simulation.json").read_text())
    assert report["budget"] == 50 and set(report["metrics"]["auroc"]["strategies"]) == {"random", "kcenter"}
    assert (out / "curves.png").stat().st_size > 1000 and "saving" in (out / "simulation.html").read_text().lower()
    assert not (out / "work").exists()  # the rounds' checkpoints are removed
    assert summary["headline"]["strategy"] == "kcenter"


def test_cli_simulate_refuses_a_bad_strategy(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["active-learn", "simulate", "--data", str(tmp_path), "--out", str(tmp_path / "s"), "--strategy", "x"]
    )
    assert result.exit_code == 2 and "unknown strategy 'x'" in result.output
