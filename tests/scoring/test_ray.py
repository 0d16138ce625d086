"""`score` on a local Ray cluster (one per module): the same rows as the local engine, resume, sizing.

Ray's failure mode is a hang (an actor waiting for a CPU that never frees), so every test has a timeout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.scoring.conftest import read_rows

from dermascan.scoring import score
from dermascan.scoring.ray_engine import DECODE_TASK_CPUS, plan_actors
from dermascan.scoring.sources import ScoringError
from dermascan.taxonomy import CLASSES

pytestmark = pytest.mark.timeout(300)  # a hang guard, far above the ~1 min a test takes


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_ray_and_local_give_the_same_rows(cluster: None, bundle: Path, archive: Path, tmp_path: Path) -> None:
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    score(bundle, archive, local, batch_size=8)
    # A file:// URL on Ray: the decode tasks read through fsspec, in other processes.
    summary = score(bundle, f"file://{archive}", on_ray, engine="ray", batch_size=8, actors=2)
    assert (summary.n_scored, summary.n_errors, summary.n_rows) == (25, 3, 25)
    a, b = read_rows(local), read_rows(on_ray)
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["image_id"] == rb["image_id"]
        for c in (*CLASSES, "melanoma_risk", "confidence"):
            assert (ra[c] is None) == (rb[c] is None)
            if ra[c] is not None:
                assert abs(ra[c] - rb[c]) <= 1e-6, (ra["path"], c)
        for c in ("primary", "melanoma_flag", "risk_band", "threshold", "model_version", "bundle_digest", "error"):
            assert ra[c] == rb[c], (ra["path"], c)


def test_ray_resumes_an_output(cluster: None, bundle: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    first = score(bundle, archive / "clinic_b", out, batch_size=8)
    summary = score(bundle, archive, out, engine="ray", batch_size=8, actors=1)
    assert (summary.n_skipped, summary.n_scored, summary.n_rows) == (first.n_scored, 25 - first.n_scored, 25)
    assert len({r["path"] for r in read_rows(out)}) == 25


def test_actor_plan_fits_two_cpus_or_is_refused() -> None:
    plan = plan_actors({"CPU": 2.0}, actors=2)
    assert plan.cpus_per_actor == 0.5 and plan.threads == 1 and plan.device is None  # fractions: no deadlock
    assert 2 * plan.cpus_per_actor + DECODE_TASK_CPUS <= 2
    assert plan_actors({"CPU": 64.0}, actors=8, cpus_per_actor=4).threads == 4  # runtime threads = its CPUs
    with pytest.raises(ScoringError, match="would hang"):
        plan_actors({"CPU": 2.0}, actors=2, cpus_per_actor=1.0)  # whole CPUs leave the decode tasks nothing
    with pytest.raises(ScoringError, match="wait forever"):
        plan_actors({"CPU": 8.0}, actors=2, gpus_per_actor=1.0)
    gpu = plan_actors({"CPU": 8.0, "GPU": 1.0}, actors=2, gpus_per_actor=0.5)
    assert gpu.device == "cuda" and gpu.gpus_per_actor == 0.5
