"""The DVC pipeline (pipelines/dvc/dvc.yaml) run by `dvc repro` on a tiny configuration: it stops at the gate the
tiny model fails, then, with lenient gates, reruns only the gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole chain at toy size: ~1-2 min

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "dvc"
DVC = Path(sys.executable).parent / "dvc"
TINY = """seed: 0
data: {n: 300, size: 40}
train: {preset: cpu-demo, epochs: 1, image_size: 32, batch_size: 32}
bench: {repeats: 3}
"""


def _repro(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DVC), "repro"], cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def test_dvc_repro_runs_the_pipeline_and_stops_at_a_failing_gate(tmp_path: Path) -> None:
    if not DVC.is_file():
        pytest.fail(f"dvc is not installed in this environment ({DVC}): pip install -c constraints.txt 'dvc==3.67.1'")
    work = tmp_path / "pipeline"
    work.mkdir()
    for name in ("dvc.yaml", "gates.yaml"):
        shutil.copy(PIPELINE / name, work / name)
    (work / "params.yaml").write_text(TINY)
    # the stages call `dermascan`: run this checkout's package with this interpreter
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "dermascan"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dermascan.cli "$@"\n')
    shim.chmod(0o755)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "DVC_NO_ANALYTICS": "1",
    }
    subprocess.run([str(DVC), "init", "--no-scm"], cwd=work, env=env, check=True, capture_output=True, timeout=120)

    first = _repro(work, env)
    assert first.returncode != 0, first.stdout[-2000:]  # a 1-epoch model at 32 px fails the brief's gates
    report = json.loads((work / "reports" / "gate.json").read_text())
    assert not report["passed"] and "accuracy" in report["failed"]
    for path in (
        "data/synth/ISIC2018_Task3_GroundTruth.csv",
        "runs/model/operating_point.json",
        "bundle/manifest.json",
    ):
        assert (work / path).is_file(), path

    (work / "gates.yaml").write_text("melanoma_sensitivity_min: 0.0\naccuracy_min: 0.0\nlatency_p95_max_ms: 60000\n")
    second = _repro(work, env)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "Running stage 'gate'" in second.stdout
    for stage in ("data", "train", "evaluate", "export", "bench"):
        assert f"Running stage '{stage}'" not in second.stdout  # unchanged: DVC keeps them
    assert json.loads((work / "reports" / "gate.json").read_text())["passed"]
