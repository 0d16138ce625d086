"""The monitor's report: ``monitor.json`` (every window's figures) and ``monitor.html`` with the plots over time
(quality with its intervals beside the estimate, drift, latency, volume). The plots draw the JSON's figures and
compute nothing; matplotlib's object API on the Agg canvas, as the evaluation plots.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dermascan import _html, _io
from dermascan.monitoring.drift import FLAG_RATE_SDS, PSI_ALERT, PSI_WARNING
from dermascan.monitoring.files import ALERTS, HTML_FILE, JSON_FILE

PLOTS = {"quality": "quality.png", "drift": "drift.png", "latency": "latency.png", "volume": "volume.png"}
_DPI = 110
COLUMNS = [
    "start",
    "n",
    "max PSI",
    "flag rate",
    "z",
    "MMD p",
    "est. sens.",
    "confirmed sens.",
    "disagree (expected)",
    "p95 ms",
    "alerts",
]


def _figure(height: float = 3.0) -> Figure:
    fig = Figure(figsize=(9, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    with _io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _series(windows: list[dict[str, Any]], *keys: str) -> np.ndarray:
    """One figure of every window (NaN where a window lacks it), by a key path."""
    out = []
    for w in windows:
        v: Any = w
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        out.append(np.nan if v is None else float(v))
    return np.array(out, np.float64)


def _plot_quality(t: pd.DatetimeIndex, windows: list[dict[str, Any]], alert_below: float, path: Path) -> None:
    fig = _figure(3.4)
    ax = fig.add_subplot()
    sens = _series(windows, "quality", "sensitivity", "value")
    lo, hi = _series(windows, "quality", "sensitivity", "lo"), _series(windows, "quality", "sensitivity", "hi")
    ax.fill_between(t, lo, hi, color="#1f77b4", alpha=0.18, label="confirmed sensitivity, Wilson 95%")
    ax.plot(t, sens, color="#1f77b4", marker=".", label="confirmed sensitivity (trailing window)")
    ax.plot(t, _series(windows, "estimated_trailing"), color="#ff7f0e", ls="--", label="estimated (CBPE), same window")
    ax.plot(
        t,
        _series(windows, "quality", "specificity", "value"),
        color="#2ca02c",
        marker=".",
        label="confirmed specificity",
    )
    ax.axhline(alert_below, color="#b42318", lw=1, label=f"alert below {alert_below:.2f}")
    ax.set_ylim(0, 1.02)
    ax.set_title("Melanoma sensitivity and specificity")
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    _save(fig, path)


def _plot_drift(t: pd.DatetimeIndex, windows: list[dict[str, Any]], path: Path) -> None:
    fig = _figure(5.4)
    a1, a2, a3 = fig.subplots(3, 1, sharex=True)
    a1.plot(t, _series(windows, "input_drift", "max_psi"), marker=".", label="largest feature PSI, pooled")
    by_clinic = [max((c["max_psi"] for c in w.get("input_drift", {}).get("by_clinic", {}).values()), default=np.nan)
                 for w in windows]  # fmt: skip
    a1.plot(t, by_clinic, marker="x", ls=":", color="#7f7f7f", label="largest of one clinic")
    a1.axhline(PSI_WARNING, color="#d6a100", lw=1, label="warning 0.10")
    a1.axhline(PSI_ALERT, color="#b42318", lw=1, label="alert 0.25")
    a1.set_ylabel("PSI")
    a1.legend(fontsize=7, loc="upper left")
    a2.plot(t, _series(windows, "prediction_drift", "z"), marker=".", color="#9467bd", label="flag-rate z")
    for s in (-FLAG_RATE_SDS, FLAG_RATE_SDS):
        a2.axhline(s, color="#b42318", lw=1)
    a2.set_ylabel("z (SD)")
    a2.legend(fontsize=7, loc="upper left")
    a3.semilogy(t, _series(windows, "embedding_drift", "p_value"), marker=".", color="#8c564b", label="MMD p-value")
    a3.axhline(0.01, color="#b42318", lw=1)
    a3.set_ylabel("p")
    a3.legend(fontsize=7, loc="lower left")
    a1.set_title("Input, prediction and embedding drift")
    _save(fig, path)


def _plot_latency(t: pd.DatetimeIndex, windows: list[dict[str, Any]], path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    for q in ("p50", "p95", "p99"):
        ax.plot(t, _series(windows, "latency_ms", q), marker=".", label=q)
    ax.set_ylabel("ms")
    ax.set_title("Latency (stored per answer)")
    ax.legend(fontsize=7)
    _save(fig, path)


def _plot_volume(t: pd.DatetimeIndex, windows: list[dict[str, Any]], path: Path) -> None:
    fig = _figure(2.6)
    ax = fig.add_subplot()
    ax.bar(t, [w["n"] for w in windows], width=0.8 * (t[1] - t[0]) if len(t) > 1 else 0.8, color="#5b6776")
    ax.set_title("Answered images per window")
    _save(fig, path)


def _cell_quality(w: dict[str, Any]) -> str:
    q = w["quality"]
    if q["sensitivity"] is None:
        return f"{q['state']} ({q['n_melanoma']})"
    s = q["sensitivity"]
    return f"{s['value']:.3f} [{s['lo']:.2f}, {s['hi']:.2f}] of {q['n_melanoma']}"


def _rows(windows: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for w in windows:
        pdrift = w.get("prediction_drift", {})
        rows.append([
            w["start"][:16].replace("T", " "),
            w["n"],
            w.get("input_drift", {}).get("max_psi"),
            pdrift.get("rate"),
            pdrift.get("z"),
            w.get("embedding_drift", {}).get("p_value"),
            w.get("estimated", {}).get("sensitivity"),
            _cell_quality(w),
            _cell_disagreement(w["concept_drift"]),
            w["latency_ms"]["p95"],
            ", ".join(w["alerts"]) or "none",
        ])  # fmt: skip
    return rows


def _service_table(figures: list[dict[str, Any]]) -> str:
    rows = [
        [f["url"], f["error"]]
        if f["error"]
        else [
            f["url"],
            f["requests"],
            f["server_errors"],
            None if f["error_rate"] is None else f"{f['error_rate']:.2%}",
            f["client_errors"],
            f["queue_depth"],
            None if f["inference_ms_mean"] is None else round(f["inference_ms_mean"], 1),
        ]
        for f in figures
    ]
    header = ["instance", "API requests since start", "5xx", "error rate", "4xx", "queue depth", "model ms (mean)"]
    return _html.table(header, rows)


def _cell_disagreement(c: dict[str, Any]) -> str | None:
    if c.get("disagreement") is None:
        return None
    expected = c.get("expected")
    return f"{c['disagreement']:.2f}" + (f" ({expected:.2f})" if expected is not None else "")


def _features_table(window: dict[str, Any]) -> str:
    feats = window.get("features")
    if not feats:
        return _html.paragraph("Too few predictions in the last window for the feature figures.")
    rows = [[f, e.get("psi"), e.get("level", "range only"), e.get("out_of_range")] for f, e in feats.items()]
    clinics = window["input_drift"]["by_clinic"]
    by_clinic = _html.table(
        ["clinic", "images", "largest PSI", "feature"],
        [[c, e["n"], e["max_psi"], e["feature"]] for c, e in clinics.items()],
    )
    return _html.table(["feature", "PSI (pooled)", "level", "share outside the training range"], rows) + by_clinic


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``monitor.json``, the plots and ``monitor.html`` into ``out_dir``.

    Returns:
        The HTML page's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    windows = report["windows"]
    t = pd.DatetimeIndex([pd.Timestamp(w["start"]) for w in windows])
    _plot_quality(t, windows, report["config"]["sensitivity_alert"], out / PLOTS["quality"])
    _plot_drift(t, windows, out / PLOTS["drift"])
    _plot_latency(t, windows, out / PLOTS["latency"])
    _plot_volume(t, windows, out / PLOTS["volume"])
    report = {**report, "plots": PLOTS}
    _io.write_json(out / JSON_FILE, report)

    fired = report["alerts"]
    summary = (
        f'<p class="flag">Alerts: {html.escape(", ".join(fired))}.</p>' if fired else '<p class="ok">No alert.</p>'
    ) + _html.table(
        ["alert", "first window", "windows"],
        [[k, report["first_alert"][k], sum(k in w["alerts"] for w in windows)] for k in ALERTS],
    )
    space = report.get("reference", {}).get("embedding_space", "logits")
    embedding_note = (
        "Embedding: the model's penultimate features (what its classifier reads), projected on the 16 principal "
        "directions of the held-out images at export, one image per lesion, of this bundle's own predictions. "
        if space == "penultimate"
        else "Embedding: the model's logit space (centred log-probabilities), the classifier's projection of the "
        "penultimate embedding (this bundle was exported without the features output: export it again for the "
        "penultimate one). "
    )
    notes = (
        "Confirmed quality: the predictions of the trailing "
        f"{report['config']['quality_days']} days, with the labels that had arrived by the window's end "
        "(histopathology first, clinician where no biopsy). Estimated (CBPE): the expected confusion matrix "
        "from the calibrated probabilities at the locked threshold, on the window's own predictions; it assumes "
        "the calibration still holds and cannot see concept drift. Concept drift: disagreement with the confirmed "
        "labels above 20%, and 5 points and 2 SD above the disagreement the calibrated model expects on the same "
        "cases (in brackets). "
        + embedding_note
        + "Error rate and queue depth are not in the store (a refused request writes no row): with --metrics-url "
        "they are read from each instance's /metrics when the report is written (Service now), and Prometheus keeps "
        "them over time."
    )
    bundle = report.get("bundle", {})
    sections = [
        _html.Section("Summary", summary + _html.paragraph(notes, "note")),
        _html.Section(
            "Quality",
            _html.image(PLOTS["quality"], "sensitivity and specificity over time"),
        ),
        _html.Section("Drift", _html.image(PLOTS["drift"], "PSI, flag-rate z and MMD p-value over time")),
        _html.Section("Image features (last window)", _features_table(windows[-1])),
        _html.Section(
            "System",
            _html.image(PLOTS["latency"], "latency percentiles") + _html.image(PLOTS["volume"], "volume"),
        ),
        *([_html.Section("Service now", _service_table(report["service"]))] if report.get("service") else []),
        _html.Section(
            "Windows",
            _html.table(
                COLUMNS,
                _rows(windows),
            ),
        ),
    ]
    subtitle = (
        f"{bundle.get('name', '')} {bundle.get('version', '')}: {report['period']['since'][:10]} to "
        f"{report['period']['until'][:10]}, windows of {report['period']['window']}"
    )
    return _html.write_page(out / HTML_FILE, "DermaScan monitor", sections, subtitle)


__all__ = ["write_report"]
