"""`active-learn rank`: a run's model ranks a folder or the store's predictions awaiting a biopsy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests._postgres import admin_engine, postgres_database
from tests.store.test_repositories import _row as stored_row
from typer.testing import CliRunner

from dermascan.active_learning.pool import open_pool
from dermascan.active_learning.ranking import rank_pool
from dermascan.cli import app
from dermascan.errors import ConfigError
from dermascan.runs import OPERATING_POINT_FILE
from dermascan.store import db
from dermascan.store import feedback as feedback_repo
from dermascan.store.clinics import add_clinic
from dermascan.store.models import PredictionRow
from dermascan.taxonomy import CLASSES
from dermascan.testing import DEMO_OPERATING_POINT, random_run, synthetic_jpeg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight resnet18 at 32 px with a locked operating point."""
    run = random_run(tmp_path_factory.mktemp("al") / "run", "resnet18", 32, seed=3)
    (run / OPERATING_POINT_FILE).write_text(json.dumps({**DEMO_OPERATING_POINT, "temperature": 1.0}))
    return run


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pool")
    (folder / "sub").mkdir()
    for i in range(12):
        target = folder / ("sub" if i % 3 == 0 else ".") / f"lesion{i:02d}.jpg"
        target.write_bytes(synthetic_jpeg(48 + 4 * i, 40 + 2 * i, seed=i))
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize("strategy", ["random", "entropy", "margin", "melanoma-boundary", "bald", "kcenter"])
def test_rank_a_folder(run_dir: Path, pool_dir: Path, tmp_path: Path, strategy: str) -> None:
    _, pool = rank_pool(run_dir, pool_dir, budget=5, strategy=strategy, out=tmp_path / "ranking.csv")
    assert len(pool.names) == 12  # recursive, images only
    written = pd.read_csv(tmp_path / "ranking.csv")
    assert list(written.columns) == ["rank", "image", "score", "why", "p_melanoma", "predicted"]
    assert written["rank"].tolist() == [1, 2, 3, 4, 5]
    assert written["image"].is_unique and set(written["image"]) <= set(pool.names)
    assert written["why"].str.len().min() > 5
    assert set(written["predicted"]) <= set(CLASSES)
    if strategy == "melanoma-boundary":
        gap = (written["p_melanoma"] - DEMO_OPERATING_POINT["threshold"]).abs().to_numpy()
        assert np.all(np.diff(gap) >= -1e-12)  # nearest the locked threshold first
    elif strategy not in ("random", "kcenter"):
        assert np.all(np.diff(written["score"].to_numpy()) <= 1e-12)


def test_melanoma_boundary_needs_a_locked_threshold(tmp_path: Path, pool_dir: Path) -> None:
    uncalibrated = random_run(tmp_path / "run", "resnet18", 32)
    with pytest.raises(ConfigError, match="dermascan evaluate"):
        rank_pool(uncalibrated, pool_dir, 3, "melanoma-boundary")
    frame, _ = rank_pool(uncalibrated, pool_dir, 3, "entropy")  # the others need no threshold
    assert len(frame) == 3


def test_bad_pool_and_budget(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither an image folder nor a database"):
        rank_pool(run_dir, tmp_path / "missing", 3, "entropy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image"):
        rank_pool(run_dir, tmp_path / "empty", 3, "entropy")
    with pytest.raises(ConfigError, match="--budget"):
        rank_pool(run_dir, tmp_path / "empty", 0, "entropy")


def _prediction(clinic: str, uri: str | None, role: str = "primary", shadow_of: str | None = None) -> PredictionRow:
    row = stored_row(clinic)
    row.image_uri, row.role, row.shadow_of = uri, role, shadow_of
    return row


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (the real PostgreSQL server of tests/_postgres.py), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin = admin_engine()
    try:
        with postgres_database(admin) as url:
            yield url
    finally:
        admin.dispose()


def test_rank_the_store_pool_of_predictions_awaiting_a_biopsy(run_dir: Path, tmp_path: Path, store_url: str) -> None:
    url = store_url
    engine = db.make_engine(url)
    db.upgrade(engine)
    kept = tmp_path / "kept"
    kept.mkdir()

    def image(i: int) -> str:
        path = kept / f"{i}.jpg"
        path.write_bytes(synthetic_jpeg(64, 48, seed=i))
        return str(path)

    with db.transaction(db.session_factory(engine)) as s:
        a, _ = add_clinic(s, "Clinic A")
        b, _ = add_clinic(s, "Clinic B")
        waiting = [_prediction(a.id, image(i)) for i in range(3)] + [_prediction(b.id, image(3), role="canary")]
        biopsied = _prediction(a.id, image(4))
        not_kept = _prediction(b.id, None)
        s.add_all([*waiting, biopsied, not_kept])
        s.flush()
        s.add(_prediction(a.id, image(5), role="shadow", shadow_of=waiting[0].id))
        feedback_repo.append(s, biopsied.id, None, "MEL", None, "histopathology")
        feedback_repo.append(s, waiting[1].id, "NV", None, None, "clinician")  # a clinician's view is no biopsy
    engine.dispose()

    frame, pool = rank_pool(run_dir, url, budget=10, strategy="entropy", out=tmp_path / "r.csv")
    assert set(frame["image"]) == {w.id for w in waiting}
    assert dict(zip(frame["image"], frame["clinic"], strict=True)) == {w.id: w.clinic_id for w in waiting}
    assert [name for name, _ in pool.skipped] == [not_kept.id]
    assert "image not kept" in pool.skipped[0][1]
    if url.startswith("sqlite"):  # a .db file path is read as the same SQLite store
        assert sorted(open_pool(tmp_path / "store.db").names) == sorted(w.id for w in waiting)


def test_an_unmigrated_store_is_refused(run_dir: Path, tmp_path: Path) -> None:
    from dermascan.store import StoreError

    with pytest.raises(StoreError, match="dermascan db upgrade"):
        rank_pool(run_dir, f"sqlite:///{tmp_path / 'new.db'}", 3, "entropy")


def test_cli_rank(run_dir: Path, pool_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ranking.csv"
    args = ["active-learn", "rank", "--run", str(run_dir), "--pool", str(pool_dir), "--budget", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ranked 4 of 12 pool images by melanoma-boundary" in result.output
    assert len(pd.read_csv(out)) == 4
    bad = CliRunner().invoke(app, [*args[:-2], "--out", str(out), "--strategy", "coin"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(app, [*args[:4], "--pool", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 2 and "neither an image folder nor a database" in missing.output


def test_cli_strategy_choices_are_the_library_strategies() -> None:
    from typing import get_args

    from dermascan.active_learning.strategies import STRATEGIES
    from dermascan.cli import learning

    assert get_args(learning.StrategyName) == tuple(STRATEGIES)
