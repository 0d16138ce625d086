"""A monitor report written from hand-made frames (no model, no store), for the tests of what reads reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dermascan.monitoring.features import FEATURES
from dermascan.monitoring.monitor import MonitorConfig, monitor_frames
from dermascan.monitoring.reference import build_reference
from dermascan.monitoring.report import write_report
from dermascan.store.models import prob_column
from dermascan.taxonomy import CLASSES


def write_drifted_report(folder: Path) -> None:
    """A report of one 3-day window whose images are much brighter than the reference's (an input-drift alert),
    every case confirmed."""
    rng = np.random.default_rng(0)
    train = [{f: float(v) for f, v in zip(FEATURES, rng.uniform(0.2, 0.6, len(FEATURES)), strict=True)}
             for _ in range(300)]  # fmt: skip
    probs = rng.dirichlet(np.ones(7), 200)
    ref = build_reference(train, probs, probs[:, 0] > 0.3, list(CLASSES), np.log(probs))
    n = 60
    p = rng.dirichlet(np.ones(7), n)
    preds = pd.DataFrame({
        "id": [f"p{i}" for i in range(n)],
        "created_at": pd.Timestamp("2026-03-01 09:00", tz="UTC") + pd.to_timedelta(rng.uniform(0, 8, n), unit="h"),
        "clinic_id": "clinic-a", "model_version": "v1",
        "primary_class": [CLASSES[k] for k in p.argmax(1)], "melanoma_flag": p[:, 0] > 0.3,
        "latency_ms": rng.uniform(20, 80, n), **{prob_column(c): p[:, i] for i, c in enumerate(CLASSES)},
        **{f: rng.uniform(0.7, 0.9, n) for f in FEATURES},
    })  # fmt: skip
    # every case confirmed by a clinician a day later, the true class drawn from the model's own probabilities
    truth = [CLASSES[rng.choice(7, p=row)] for row in p]
    feedback = pd.DataFrame({
        "prediction_id": preds["id"], "created_at": preds["created_at"] + pd.Timedelta(days=1),
        "clinician_label": truth, "histopathology_label": None,
    })  # fmt: skip
    cfg = MonitorConfig(window=pd.Timedelta(days=3).to_pytimedelta(), min_melanomas=3, min_confirmed=10)
    write_report(monitor_frames(preds, feedback, ref, cfg), folder)
