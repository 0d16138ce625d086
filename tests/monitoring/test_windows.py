"""The monitor's windows on hand-made frames (no model, no store): a small clinic's input drift over trailing
windows, and embedding drift on the monitored bundle's own stored embeddings."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from dermascan.monitoring.features import FEATURES
from dermascan.monitoring.monitor import MonitorConfig, monitor_frames
from dermascan.monitoring.reference import build_reference
from dermascan.store.models import prob_column
from dermascan.taxonomy import CLASSES

DAY0 = pd.Timestamp("2026-03-01", tz="UTC")
EMPTY_FEEDBACK = pd.DataFrame(columns=["prediction_id", "created_at", "clinician_label", "histopathology_label"])


def _reference(rng: np.random.Generator, space: str = "logits", dims: int = 7):
    train = [{f: float(v) for f, v in zip(FEATURES, rng.uniform(0.2, 0.6, len(FEATURES)), strict=True)}
             for _ in range(1000)]  # fmt: skip
    probs = rng.dirichlet(np.ones(7), 400)
    emb = np.log(probs) if space == "logits" else rng.normal(size=(400, dims))
    return build_reference(train, probs, probs[:, 0] > 0.3, list(CLASSES), emb, embedding_space=space)


def _day(rng: np.random.Generator, day: int, clinic: str, n: int, shifted: bool = False, **extra) -> pd.DataFrame:
    p = rng.dirichlet(np.ones(7), n)
    low, high = (0.7, 0.9) if shifted else (0.2, 0.6)
    return pd.DataFrame({
        "id": [f"{clinic}-{day}-{i}" for i in range(n)],
        "created_at": DAY0 + pd.Timedelta(days=day) + pd.to_timedelta(rng.uniform(8, 18, n), unit="h"),
        "clinic_id": clinic, "model_version": "v1",
        "primary_class": [CLASSES[k] for k in p.argmax(1)], "melanoma_flag": p[:, 0] > 0.3,
        "latency_ms": rng.uniform(20, 80, n), **{prob_column(c): p[:, i] for i, c in enumerate(CLASSES)},
        **{f: rng.uniform(low, high, n) for f in FEATURES}, **extra,
    })  # fmt: skip


def test_a_small_clinic_with_a_new_device_alerts_over_trailing_windows() -> None:
    rng = np.random.default_rng(0)
    ref = _reference(rng)
    # a big clinic (200 a day) and a small one (30 a day) whose new dermoscope arrives on day 3
    frames = [_day(rng, d, "big", 200) for d in range(6)] + [_day(rng, d, "small", 30, d >= 3) for d in range(6)]
    preds = pd.concat(frames, ignore_index=True)
    cfg = MonitorConfig(min_clinic_window=50, clinic_windows=3)
    windows = monitor_frames(preds, EMPTY_FEEDBACK, ref, cfg, DAY0, DAY0 + pd.Timedelta(days=6))["windows"]
    small = [w["input_drift"]["by_clinic"].get("small") for w in windows]
    # 30 images a day never reach 50 alone: the clinic is measured over the trailing windows instead
    assert all(s is not None and s["n"] in (60, 90) for s in small[1:])
    assert small[0] is None  # day 0 has no earlier window to add
    # steady: no alert from the longer view (60-90 images in 10 bins often show a PSI warning, never an alert)
    assert all(s["level"] != "alert" for s in small[1:3])
    assert all(s["level"] == "alert" for s in small[4:])
    assert "input_drift" in windows[4]["alerts"]  # within 2 days of the switch
    assert "input_drift" not in windows[1]["alerts"] and "input_drift" not in windows[2]["alerts"]
    assert windows[5]["input_drift"]["pooled_level"] in ("ok", "warning")  # diluted in the big clinic's images
    # the long view never reaches back beyond clinic_windows: day 5 holds days 3-5 only (all new device)
    assert small[5]["since"] >= (DAY0 + pd.Timedelta(days=3)).isoformat()


def test_penultimate_embedding_drift_reads_only_the_monitored_bundles_rows() -> None:
    rng = np.random.default_rng(1)
    ref = _reference(rng, "penultimate", dims=4)
    same = [list(v) for v in rng.normal(size=(120, 4))]  # what the reference saw
    moved = [list(v) for v in rng.normal(size=(120, 4)) + 2.0]  # a change of what is photographed
    mine = _day(rng, 0, "a", 120, bundle_digest="mine", embedding=same)
    other = _day(rng, 0, "a", 120, bundle_digest="other", embedding=moved)  # another bundle's projection
    cfg = MonitorConfig(min_window=30, permutations=100)
    until = DAY0 + pd.Timedelta(days=1)
    (w,) = monitor_frames(pd.concat([mine, other]), EMPTY_FEEDBACK, ref, cfg, DAY0, until, digest="mine")["windows"]
    assert w["embedding_drift"]["space"] == "penultimate" and w["embedding_drift"]["n"] == 120
    assert w["embedding_drift"]["p_value"] > 0.05 and "embedding_drift" not in w["alerts"]

    drifted = _day(rng, 0, "a", 120, bundle_digest="mine", embedding=moved)
    (w,) = monitor_frames(drifted, EMPTY_FEEDBACK, ref, cfg, DAY0, until, digest="mine")["windows"]
    assert w["embedding_drift"]["p_value"] < 0.01 and "embedding_drift" in w["alerts"]

    # rows stored before migration 0006 (no embedding): no figure and no alert, not a comparison in another space
    old = _day(rng, 0, "a", 120, bundle_digest="mine", embedding=None)
    (w,) = monitor_frames(old, EMPTY_FEEDBACK, ref, cfg, DAY0, until, digest="mine")["windows"]
    assert w["embedding_drift"]["p_value"] is None and w["embedding_drift"]["n"] == 0
    assert "embedding_drift" not in w["alerts"]


def test_clinic_windows_must_be_positive() -> None:
    import pytest

    from dermascan.monitoring.monitor import MonitorError

    with pytest.raises(MonitorError, match="clinic_windows"):
        MonitorConfig(clinic_windows=0, window=dt.timedelta(days=1))
