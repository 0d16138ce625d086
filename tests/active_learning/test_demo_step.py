"""The demo's step: the ranking of an evaluated run's test pool, and the cost table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dermascan.active_learning.demo import demo_html, demo_step
from dermascan.runs import OPERATING_POINT_FILE, load_run
from dermascan.testing import DEMO_OPERATING_POINT


@pytest.mark.slow  # the shared tiny_run fixture trains a model when no other test has
def test_demo_step_ranks_the_test_split_and_writes_the_cost_table(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.ckpt", "config.yaml", "splits.csv"):  # a copy: the shared run stays uncalibrated
        shutil.copy(tiny_run / name, run / name)
    (run / OPERATING_POINT_FILE).write_text(json.dumps(DEMO_OPERATING_POINT))
    step = demo_step(tmp_path / "out", run, budget=6, bench=tmp_path / "no-bench.json")
    splits = load_run(run, model=False).splits
    assert step["pool_size"] == int((splits["split"] == "test").sum())
    ranking = pd.read_csv(step["ranking_csv"])
    assert len(ranking) == 6 and ranking["rank"].tolist() == list(range(1, 7))
    test_ids = set(splits.loc[splits["split"] == "test", "image_id"])
    assert {Path(p).stem for p in ranking["image"]} <= test_ids
    assert step["cost_total"] == 136_815 and Path(step["cost_md"]).is_file()
    cpu = next(s for s in step["scenarios"] if s["name"].startswith("CPU"))
    assert cpu["total"] is None  # no benchmark given: the scenario says what it needs
    fragment = demo_html(step)
    assert "$136,815" in fragment and "melanoma-boundary" in fragment and step["top"][0]["image"] in fragment
