"""A trained tiny run, its threshold locked on validation, exported once per session with its monitoring
reference (shared by the monitor and simulation tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: The class mix of ``synth_small`` (the tests' training set): the simulated clinics send the same mix.
TRAINING_PRIORS = {"MEL": 0.3, "NV": 0.4, "BCC": 0.06, "AKIEC": 0.06, "BKL": 0.08, "DF": 0.05, "VASC": 0.05}


@pytest.fixture(scope="session")
def monitored_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dermascan.evaluation.evaluate import evaluate
    from dermascan.export import export_bundle

    run = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(tiny_run, run)  # tiny_run is shared: lock the threshold on a copy
    # a threshold for 97% on the ~20 validation melanomas: conservative, so the steady traffic's sensitivity stays
    # above the 0.88 alert (a 90% point on so few would sit at the alert line) and only the degraded model's falls
    evaluate(run, run / "eval", split="val", target_sensitivity=0.97, require_lower_ci=False, n_boot=20, progress=False)
    return export_bundle(run, tmp_path_factory.mktemp("bundle") / "b", parity_runtimes=["onnxruntime"])
