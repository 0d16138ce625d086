"""The monitor: read the store over a period, cut it into windows, and compute every figure of each window
against the bundle's training reference. The figures are in :mod:`~dermascan.monitoring.drift` and
:mod:`~dermascan.monitoring.quality`; this module only windows the data and decides which alerts fire.

Per window (``[start, end)``, one day by default):

* volume, latency p50/p95/p99 (from the stored ``latency_ms``), models that answered;
* data quality: each image feature's share outside the training range; input drift: PSI of each feature, pooled
  and per clinic (one clinic's new dermoscope is diluted in the pooled figure);
* prediction drift: melanoma-flag rate against the reference (2 SD), class mix PSI;
* embedding drift: MMD two-sample test of the window's embeddings (the penultimate features the Predictor
  projected and the store kept; the logit space for a bundle without them) against the reference sample;
* estimated performance (CBPE) of the window's predictions, available at once;
* confirmed quality and concept drift over the trailing ``quality_days`` of predictions, with only the labels
  that had arrived by the window's end: what the operator knew that day, so the report says when an alert
  *could* have fired, histopathology delay included.

Error rate and queue depth are not in the store (a refused request writes no row): ``dermascan monitor
--metrics-url URL`` reads them from each instance's ``/metrics`` when the report is written
(:mod:`~dermascan.monitoring.service`), and the shipped Prometheus rules watch them over time.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from dermascan.errors import DermaScanError
from dermascan.monitoring import drift
from dermascan.monitoring.embedding import embeddings_of, mmd_test
from dermascan.monitoring.features import DRIFT_FEATURES, FEATURES
from dermascan.monitoring.files import ALERTS, DRIFT_ALERTS
from dermascan.monitoring.quality import MIN_MELANOMAS, SENSITIVITY_ALERT, cbpe, confirmed_labels, confirmed_quality
from dermascan.monitoring.reference import FeatureReference, Reference, bin_counts
from dermascan.store.models import prob_column
from dermascan.taxonomy import CLASSES


class MonitorError(DermaScanError, ValueError):
    """The monitor cannot run on what it was given (bad period or window, empty store), with the fix."""


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor computes and when it alerts.

    Attributes:
        window: length of one window.
        quality_days: confirmed quality and concept drift use the predictions of this many trailing days.
        min_window: fewer predictions than this in a window: no drift figure (``too few``), no drift alert.
        min_clinic_window: a clinic's own PSI is computed (and can alert) from this many images.
        clinic_windows: a clinic with fewer images than that in the window is measured over up to this many
            windows ending with it (a clinic of 30 images a day, with a new dermoscope, alerts on its second day
            instead of never).
        min_melanomas: fewer confirmed melanomas than this: "not enough confirmed melanomas".
        min_confirmed: fewer confirmed cases than this: no concept-drift figure.
        sensitivity_alert: confirmed sensitivity below this alerts (the brief's 0.88).
        max_disagreement: disagreement with confirmed labels above this alerts (the brief's 20%), when it is also
            above what the calibrated model expects on those cases (:func:`~dermascan.monitoring.drift.concept_drift`).
        mmd_alpha: embedding drift alerts at a permutation p-value below this.
        mmd_sample: at most this many embeddings of a window enter the test (drawn at random).
        permutations: permutations of the MMD test.
        n_boot: bootstrap resamples of the AUROC interval.
    """

    window: dt.timedelta = dt.timedelta(days=1)
    quality_days: int = 30
    min_window: int = 30
    min_clinic_window: int = 50
    clinic_windows: int = 3
    min_melanomas: int = MIN_MELANOMAS
    min_confirmed: int = 30
    sensitivity_alert: float = SENSITIVITY_ALERT
    max_disagreement: float = drift.MAX_DISAGREEMENT
    mmd_alpha: float = 0.01
    mmd_sample: int = 200
    permutations: int = 200
    n_boot: int = 200

    def __post_init__(self) -> None:
        if self.window <= dt.timedelta(0):
            raise MonitorError(f"--window must be positive, got {self.window}")
        if self.quality_days < 1:
            raise MonitorError(f"quality_days must be at least 1, got {self.quality_days}")
        if self.clinic_windows < 1:
            raise MonitorError(f"clinic_windows must be at least 1, got {self.clinic_windows}")


def parse_window(text: str) -> dt.timedelta:
    """``1d``, ``12h``, ``30m`` or ``2w`` -> a timedelta.

    Raises:
        MonitorError: anything else.
    """
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit() or int(t[:-1]) == 0:
        raise MonitorError(f"--window {text!r} is not a duration; use e.g. 1d, 12h, 30m or 1w")
    return dt.timedelta(**{units[t[-1]]: int(t[:-1])})


def parse_time(text: str, what: str) -> dt.datetime:
    """An ISO date or date-time (UTC when no zone is given).

    Raises:
        MonitorError: not ISO 8601.
    """
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise MonitorError(f"{what} {text!r} is not a date; use ISO 8601, e.g. 2026-11-01 or 2026-11-01T06:00") from e
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


# ----------------------------------------------------------------------------------------------- loading


def _utc(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series)
    return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")


def load_frames(
    db_url: str, since: dt.datetime | None, until: dt.datetime | None, lookback: dt.timedelta
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions created in ``[since - lookback, until)`` and their feedback, as two frames.

    Raises:
        StoreError: the database cannot be reached or is not migrated.
    """
    from dermascan.store import check_schema, make_engine, session_factory
    from dermascan.store import feedback as feedback_repo
    from dermascan.store import predictions as prediction_repo

    engine = make_engine(db_url)
    try:
        check_schema(engine)
        start = None if since is None else since - lookback
        with session_factory(engine)() as session:
            rows = prediction_repo.answered_between(session, start, until)
            fb = feedback_repo.of_predictions_between(session, start, until)
    finally:
        engine.dispose()
    columns = ["id", "created_at", "clinic_id", "lesion_id", "model_version", "bundle_digest", "role",
               "primary_class", "melanoma_flag", "latency_ms", "embedding", *(prob_column(c) for c in CLASSES),
               *FEATURES]  # fmt: skip
    preds = pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)
    preds["created_at"] = _utc(preds["created_at"])
    for f in FEATURES:  # rows stored before migration 0004 have no sharpness etc.: NaN, left out per feature
        preds[f] = pd.to_numeric(preds[f], errors="coerce").astype(float)
    fcols = ["prediction_id", "created_at", "clinician_label", "histopathology_label"]
    feedback = pd.DataFrame([{c: getattr(f, c) for c in fcols} for f in fb], columns=fcols)
    feedback["created_at"] = _utc(feedback["created_at"])
    return preds, feedback


# ------------------------------------------------------------------------------------------------ windows


def _percentiles(ms: np.ndarray) -> dict[str, float | None]:
    if ms.size == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 6)


def _drift(
    w: pd.DataFrame, recent: pd.DataFrame, reference: Reference, cfg: MonitorConfig, seed: int, digest: str | None
) -> dict[str, Any]:
    """Label-free figures of one window (input, prediction and embedding drift, CBPE); ``recent`` holds the
    window and the ``cfg.clinic_windows - 1`` windows before it (a small clinic's PSI)."""
    probs = w[[prob_column(c) for c in CLASSES]].to_numpy(np.float64)  # (n, K)
    flags = w["melanoma_flag"].to_numpy(bool)
    features = {}
    for f in FEATURES:
        ref = reference.features[f]
        entry: dict[str, Any] = {"out_of_range": _num(drift.out_of_range_share(ref, w[f].to_numpy()))}
        if f in DRIFT_FEATURES:
            value, chance = _psi(ref, w[f].to_numpy(), reference.n_train)
            entry.update(psi=_num(value), chance=_num(chance), level=drift.psi_level(value, chance))
        features[f] = entry
    worst = max((e["psi"] for e in features.values() if e.get("psi") is not None), default=math.nan)
    clinics = _clinic_psi(w, recent, reference, cfg)
    pooled = max((e["level"] for e in features.values() if "level" in e), key=_LEVELS.index, default="none")
    level = max([pooled, *(c["level"] for c in clinics.values())], key=_LEVELS.index)
    # frames built without lesion ids (callers of monitor_frames): every image its own lesion
    lesions = w["lesion_id"] if "lesion_id" in w else pd.Series(None, index=w.index, dtype=object)
    rate = drift.flag_rate_drift(flags, reference.flag_rate, reference.n_held_out, clusters=lesions.to_numpy(object))
    # one image per lesion (rows without a lesion id all kept), as the reference: the permutation test assumes
    # independent rows
    first = (lesions.isna() | ~lesions.duplicated()).to_numpy()
    return {
        "features": features,
        "input_drift": {
            "max_psi": _num(worst),
            "pooled_level": pooled,
            "by_clinic": clinics,
            "level": level,
        },
        "prediction_drift": {
            **{k: _num(v) if isinstance(v, float) else v for k, v in asdict(rate).items()},
            "class_mix_psi": _num(drift.class_mix_psi(reference.class_mix, w["primary_class"].to_numpy())),
        },
        "embedding_drift": _embedding_drift(w[first], probs[first], reference, cfg, seed, digest),
        "estimated": cbpe(w[prob_column("MEL")].to_numpy(), flags).to_dict(),
    }


def _embedding_drift(
    w: pd.DataFrame, probs: np.ndarray, reference: Reference, cfg: MonitorConfig, seed: int, digest: str | None
) -> dict[str, Any]:
    """MMD of the window's embeddings against the reference sample, in the reference's space.

    ``penultimate``: the stored embeddings of the monitored bundle's own predictions (another bundle projects
    other features with another projection: not comparable). ``logits``: every row's centred log-probabilities.
    """
    space = reference.embedding_space
    if space == "penultimate":
        rows = w[w["embedding"].notna()] if "embedding" in w else w.iloc[:0]
        if digest is not None and "bundle_digest" in rows:
            rows = rows[rows["bundle_digest"] == digest]
        k = reference.embeddings.shape[1]
        emb = np.array(rows["embedding"].tolist(), np.float64).reshape(len(rows), k if rows.empty else -1)  # (n, k)
    else:
        emb = embeddings_of(probs)  # (n, K)
    if len(emb) < 2 or emb.shape[1] != reference.embeddings.shape[1]:
        return {"mmd2": None, "p_value": None, "n": len(emb), "space": space}
    if len(emb) > cfg.mmd_sample:
        emb = emb[np.random.default_rng(seed).choice(len(emb), cfg.mmd_sample, replace=False)]
    mmd = mmd_test(reference.embeddings, emb, cfg.permutations, seed)
    return {"mmd2": _num(mmd.mmd2), "p_value": _num(mmd.p_value), "n": mmd.n_window, "space": space}


def _clinic_psi(
    w: pd.DataFrame, recent: pd.DataFrame, reference: Reference, cfg: MonitorConfig
) -> dict[str, dict[str, Any]]:
    """The largest feature PSI of each clinic of the window, over its images of the window or, with fewer than
    ``min_clinic_window``, of the trailing windows in ``recent``: a new dermoscope in one clinic of several is
    diluted in the pooled figure, and the operator needs to know where."""
    out = {}
    for clinic in w["clinic_id"].unique():
        part = w[w["clinic_id"] == clinic]
        if len(part) < cfg.min_clinic_window:
            part = recent[recent["clinic_id"] == clinic]
            if len(part) < cfg.min_clinic_window:
                continue
        psis = {f: _psi(reference.features[f], part[f].to_numpy(), reference.n_train) for f in DRIFT_FEATURES}
        finite = {f: v for f, v in psis.items() if not math.isnan(v[0])}
        if finite:
            feature = max(finite, key=lambda f: finite[f][0])
            value, chance = finite[feature]
            out[str(clinic)] = {
                "n": len(part),
                "since": part["created_at"].min().isoformat(),
                "max_psi": round(value, 6),
                "chance": _num(chance),
                "feature": feature,
                "level": max((drift.psi_level(*v) for v in finite.values()), key=_LEVELS.index),
            }
    return out


_LEVELS = ("none", "ok", "warning", "alert")


def _psi(ref: FeatureReference, values: np.ndarray, n_train: int) -> tuple[float, float]:
    """PSI of a window's values and its chance under no drift."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    counts = bin_counts(v, ref.edges)
    return drift.psi(ref.expected, counts), drift.psi_chance(ref.expected, counts, n_train)


def _quality(recent: pd.DataFrame, feedback: pd.DataFrame, end: pd.Timestamp, cfg: MonitorConfig) -> dict[str, Any]:
    """Confirmed quality and concept drift of the trailing predictions, with the labels known at ``end``."""
    labels = confirmed_labels(feedback[feedback["prediction_id"].isin(recent["id"])], as_of=end)
    cases = recent.merge(labels, left_on="id", right_on="prediction_id")
    quality = confirmed_quality(
        (cases["label"] == "MEL").to_numpy(),
        cases["melanoma_flag"].to_numpy(bool),
        cases[prob_column("MEL")].to_numpy(),
        cases["source"].to_numpy(),
        cfg.min_melanomas,
        cfg.sensitivity_alert,
        cfg.n_boot,
    ).to_dict()
    if len(cases) >= cfg.min_confirmed:
        primary = cases["primary_class"].to_numpy()
        probs = cases[[prob_column(c) for c in CLASSES]].to_numpy(np.float64)  # (n, K)
        column = {c: k for k, c in enumerate(CLASSES)}
        confidence = probs[np.arange(len(primary)), [column[c] for c in primary]]  # (n,) p(primary)
        concept = drift.concept_drift(primary, cases["label"].to_numpy(), confidence, cfg.max_disagreement)
    else:
        concept = drift.ConceptDrift(math.nan, math.nan, math.nan, False)
    return {
        "quality": quality,
        # CBPE over the same trailing predictions (all of them, confirmed or not): the figure to hold against the
        # confirmed one, which it should track while the calibration holds
        "estimated_trailing": cbpe(
            recent[prob_column("MEL")].to_numpy(), recent["melanoma_flag"].to_numpy(bool)
        ).to_dict()["sensitivity"],
        "concept_drift": {
            "disagreement": _num(concept.disagreement),
            "expected": _num(concept.expected),
            "z": _num(concept.z),
            "alert": concept.alert,
            "n": len(cases),
        },
    }


def _alerts(win: dict[str, Any], cfg: MonitorConfig) -> list[str]:
    out = []
    if "input_drift" in win:
        if win["input_drift"]["level"] == "alert":
            out.append("input_drift")
        p = win["embedding_drift"]["p_value"]
        if p is not None and p < cfg.mmd_alpha:
            out.append("embedding_drift")
        if win["prediction_drift"]["alert"]:
            out.append("prediction_drift")
    if win["quality"]["state"] == "alert":
        out.append("sensitivity")
    if win["concept_drift"]["alert"]:
        out.append("concept_drift")
    return out


def monitor_frames(
    preds: pd.DataFrame,
    feedback: pd.DataFrame,
    reference: Reference,
    cfg: MonitorConfig,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """Every window's figures and alerts (the monitor's JSON, without the file paths). ``digest``: the monitored
    bundle's (:func:`~dermascan.inference.bundle.bundle_digest`); only its own rows' embeddings are compared.

    Raises:
        MonitorError: no prediction in the period.
    """
    in_period = preds
    if since is not None:
        in_period = in_period[in_period["created_at"] >= pd.Timestamp(since)]
    if until is not None:
        in_period = in_period[in_period["created_at"] < pd.Timestamp(until)]
    if in_period.empty:
        raise MonitorError(
            "no predictions in the period"
            + (f" {since:%Y-%m-%d %H:%M} - {until:%Y-%m-%d %H:%M}" if since and until else "")
            + ": check --since/--until and --db (the service writes one row per answered image)"
        )
    step = pd.Timedelta(cfg.window)
    first = pd.Timestamp(since) if since is not None else in_period["created_at"].min().floor("D")
    last = pd.Timestamp(until) if until is not None else in_period["created_at"].max()
    lookback = pd.Timedelta(days=cfg.quality_days)
    windows = []
    start, i = first, 0
    while start < last or (start == last and until is None):
        end = start + step
        w = in_period[(in_period["created_at"] >= start) & (in_period["created_at"] < end)]
        win: dict[str, Any] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "n": len(w),
            "latency_ms": _percentiles(w["latency_ms"].to_numpy(np.float64)),
            "models": w["model_version"].value_counts().to_dict(),
        }
        if len(w) >= cfg.min_window:
            trailing = in_period[(in_period["created_at"] >= end - cfg.clinic_windows * step)
                                 & (in_period["created_at"] < end)]  # fmt: skip
            win.update(_drift(w, trailing, reference, cfg, i, digest))
        else:
            win["drift"] = "too few"
        recent = preds[(preds["created_at"] >= end - lookback) & (preds["created_at"] < end)]
        win.update(_quality(recent, feedback, end, cfg))
        win["alerts"] = _alerts(win, cfg)
        windows.append(win)
        start, i = end, i + 1
    first_alert = {kind: next((w["start"] for w in windows if kind in w["alerts"]), None) for kind in ALERTS}
    return {
        "period": {"since": windows[0]["start"], "until": windows[-1]["end"], "window": str(cfg.window)},
        "config": {k: str(v) if isinstance(v, dt.timedelta) else v for k, v in asdict(cfg).items()},
        "reference": {
            "n_train": reference.n_train,
            "n_held_out": reference.n_held_out,
            "flag_rate": reference.flag_rate,
            "embedding_space": reference.embedding_space,
        },
        "windows": windows,
        "first_alert": first_alert,
        "alerts": sorted({a for w in windows for a in w["alerts"]}, key=ALERTS.index),
    }


def monitor(
    db_url: str,
    bundle: str | os.PathLike[str],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    cfg: MonitorConfig | None = None,
) -> dict[str, Any]:
    """Monitor the store at ``db_url`` against the reference of ``bundle`` (its checksums verified).

    Raises:
        BundleError: a tampered or damaged bundle.
        ReferenceError: the bundle has no training reference.
        StoreError: the database cannot be read.
        MonitorError: no prediction in the period.
    """
    from dermascan.inference.bundle import bundle_digest, verify_bundle
    from dermascan.monitoring.reference import load_reference

    cfg = cfg or MonitorConfig()
    if since is not None and until is not None and since >= until:
        raise MonitorError(f"--since {since:%Y-%m-%d %H:%M} is not before --until {until:%Y-%m-%d %H:%M}")
    manifest = verify_bundle(bundle)
    reference = load_reference(bundle)
    preds, feedback = load_frames(db_url, since, until, dt.timedelta(days=cfg.quality_days))
    if preds.empty:
        raise MonitorError(
            f"the store has no predictions{' in the period' if since or until else ''}: nothing to monitor"
        )
    report = monitor_frames(preds, feedback, reference, cfg, since, until, bundle_digest(bundle))
    report["bundle"] = {
        "name": manifest["name"],
        "version": manifest["version"],
        "threshold": manifest["decision"].get("threshold"),
    }
    return report


__all__ = [
    "ALERTS",
    "DRIFT_ALERTS",
    "MonitorConfig",
    "MonitorError",
    "load_frames",
    "monitor",
    "monitor_frames",
    "parse_time",
    "parse_window",
]
