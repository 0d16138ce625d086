"""The simulation's report: learning curves per strategy, labels needed to match random, the saving.

The yardstick is the figure random sampling reaches with the whole budget (mean over repeats). For each
strategy, the labels it needs to reach that figure, and stay at it, are read off its mean learning curve
(linear interpolation between rounds; "not reached" when its last point is below). The saving
is the budget minus those labels, in labels and in dollars, and as a share of the labels acquired after the
seed (what the brief's 1,000 new labels a month are). The interval is a percentile bootstrap over repeats
(:func:`dermascan.evaluation.bootstrap.bootstrap_ci`): each resample redraws whole repeats, random's and the
strategy's together, and recomputes both the yardstick and the crossing. With 3 repeats there are only 10
distinct resamples, so the interval is coarse: it shows the spread of repeats, not a precise 95% bound.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _html, _io
from dermascan.evaluation._json import jsonable
from dermascan.evaluation.bootstrap import bootstrap_ci
from dermascan.evaluation.plots import _new_figure, _save

REPORT_JSON = "simulation.json"
REPORT_HTML = "simulation.html"
CURVES_PNG = "curves.png"
#: The figures whose learning curves are reported; the first is the headline.
METRICS = {"auroc": "melanoma AUROC", "specificity": "specificity at the target sensitivity"}
N_BOOT = 2000
# A saving that was not reached within the budget is negative and of unknown size. The bootstrap sees this
# finite stand-in (interpolating quantiles with -inf gives NaN); any bound below NOT_REACHED / 10 reads "not reached".
NOT_REACHED = -1e9


def labels_to_reach(labels: np.ndarray, curve: np.ndarray, target: float) -> float:
    """Labels from which ``curve`` (one value per entry of ``labels``, ascending) reaches ``target`` and stays there.

    A learning curve of a few rounds is noisy: a strategy that touches the target once and falls back has not
    reached it, so the crossing counted is the one after the curve's last point below the target (linear
    interpolation between those two points). ``inf`` when the last point is below the target.
    """
    below = np.flatnonzero(~(curve >= target))  # NaN counts as below
    if not len(below):
        return float(labels[0])
    j = int(below[-1])
    if j == len(curve) - 1:
        return math.inf
    x0, x1, y0, y1 = labels[j], labels[j + 1], curve[j], curve[j + 1]
    if not np.isfinite(y0):
        return float(x1)
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def _saving(labels: np.ndarray, random_rows: np.ndarray, rows: np.ndarray) -> float:
    """Budget minus labels needed (:data:`NOT_REACHED` when not reached), from per-repeat curves (R, P) of both."""
    target = float(np.nanmean(random_rows[:, -1]))
    needed = labels_to_reach(labels, np.nanmean(rows, axis=0), target)
    return NOT_REACHED if math.isinf(needed) else float(labels[-1] - needed)


def _curves(points: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """strategy -> (R, P) values of ``metric``: repeats by label counts."""
    out = {}
    for strategy, part in points.groupby("strategy", sort=False):
        out[str(strategy)] = part.pivot(index="repeat", columns="labels", values=metric).to_numpy(dtype=np.float64)
    return out


def summarise(points: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """The report as a dict (strict JSON once :func:`jsonable`): curves, labels needed, saving per strategy."""
    labels = np.sort(points["labels"].unique()).astype(np.float64)  # (P,)
    budget, seed_labels = float(labels[-1]), float(labels[0])
    acquired = budget - seed_labels
    cost = float(config.get("label_cost", 85.0))
    repeats = int(points["repeat"].nunique())
    out: dict[str, Any] = {
        "labels": labels.tolist(),
        "budget": budget,
        "seed_labels": seed_labels,
        "repeats": repeats,
        "label_cost": cost,
        "metrics": {},
    }
    for metric, title in METRICS.items():
        curves = _curves(points, metric)
        random_rows = curves["random"]
        target = float(np.nanmean(random_rows[:, -1]))
        per_strategy = {}
        for strategy, rows in curves.items():
            needed = labels_to_reach(labels, np.nanmean(rows, axis=0), target)
            saving = _interval(labels, random_rows, rows)
            per_strategy[strategy] = {
                "mean": np.nanmean(rows, axis=0).tolist(),
                "min": np.nanmin(rows, axis=0).tolist(),
                "max": np.nanmax(rows, axis=0).tolist(),
                "sd": (np.nanstd(rows, axis=0, ddof=1) if repeats > 1 else np.full(len(labels), np.nan)).tolist(),
                "labels_needed": None if math.isinf(needed) else needed,
                "reached": not math.isinf(needed),
                "saving_labels": saving,
                "saving_dollars": _scaled(saving, cost),
                "saving_fraction": _scaled(saving, 1.0 / acquired),
            }
        out["metrics"][metric] = {"title": title, "target": target, "strategies": per_strategy}
    melanomas = points[points["labels"] == budget].groupby("strategy", sort=False)["melanomas_labelled"].mean()
    out["melanomas_labelled_at_budget"] = {str(k): float(v) for k, v in melanomas.items()}
    out["headline"] = _headline(out)
    return out


def _interval(labels: np.ndarray, random_rows: np.ndarray, rows: np.ndarray) -> dict[str, float | None]:
    """Point saving and its bootstrap interval over repeats; ``None`` stands for "not reached" (below 0)."""
    value = _saving(labels, random_rows, rows)
    lo = hi = math.nan
    if len(rows) >= 2:
        p = rows.shape[1]
        both = np.concatenate([random_rows, rows], axis=1)  # (R, 2P): a resample keeps a repeat's pair

        def statistic(_repeat: np.ndarray, resampled: np.ndarray) -> float:
            return _saving(labels, resampled[:, :p], resampled[:, p:])

        est = bootstrap_ci(statistic, np.arange(len(rows)), both, n_boot=N_BOOT, stratified=False)
        lo, hi = est.lo, est.hi
    # ``bootstrap`` False (a single repeat): no interval; None in lo/hi then means "none", not "not reached".
    return {"value": _finite(value), "lo": _finite(lo), "hi": _finite(hi), "bootstrap": len(rows) >= 2}


def _finite(v: float) -> float | None:
    return None if v < NOT_REACHED / 10 else v


def _scaled(saving: dict[str, Any], factor: float) -> dict[str, Any]:
    return {k: (v if k == "bootstrap" or v is None else v * factor) for k, v in saving.items()}


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The strategy with the largest measured AUROC saving (random excluded), for the cost model."""
    strategies = summary["metrics"]["auroc"]["strategies"]
    candidates = {k: v for k, v in strategies.items() if k != "random"}
    best = max(candidates, key=lambda k: _sortable(candidates[k]["saving_labels"]["value"]), default=None)
    if best is None:
        return {"strategy": None, "saving_fraction": None}
    s = candidates[best]
    return {
        "strategy": best,
        "metric": "auroc",
        "saving_fraction": s["saving_fraction"],
        "saving_labels": s["saving_labels"],
        "reached": s["reached"],
    }


def _sortable(v: float | None) -> float:
    return -math.inf if v is None else (v if not math.isnan(v) else -math.inf)


# -------------------------------------------------------------------------------------------- output


def plot_curves(summary: dict[str, Any], path: str | Path) -> Path:
    """Mean learning curve per strategy with the min-max band over repeats; random's full-budget figure dashed."""
    labels = np.asarray(summary["labels"])
    fig = _new_figure(11.0, 4.2)
    axes = fig.subplots(1, len(METRICS))
    for ax, block in zip(axes, summary["metrics"].values(), strict=True):
        for strategy, s in block["strategies"].items():
            (line,) = ax.plot(
                labels, s["mean"], marker="o", ms=3, label=strategy, lw=2.2 if strategy == "random" else 1.4
            )
            ax.fill_between(labels, s["min"], s["max"], color=line.get_color(), alpha=0.12)
        ax.axhline(block["target"], color="grey", ls="--", lw=1, label="random, full budget")
        ax.set_xlabel("labels used")
        ax.set_ylabel(block["title"])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Active learning: mean over {summary['repeats']} repeat(s), band = min-max")
    return _save(fig, path)


def _fmt(v: float | None, scale: float = 1.0, digits: int = 0) -> str:
    if v is None:
        return "not reached"
    return f"{v * scale:,.{digits}f}"


def _with_interval(e: dict[str, Any], unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
    def one(v: float | None) -> str:
        text = _fmt(v, scale=scale, digits=digits)
        return text if v is None else (f"${text}" if unit == "$" else f"{text}{unit}")

    interval = f" [{one(e['lo'])}, {one(e['hi'])}]" if e.get("bootstrap") else " (one repeat: no interval)"
    return one(e["value"]) + interval


def saving_rows(summary: dict[str, Any], metric: str = "auroc") -> list[list[Any]]:
    """Table rows: strategy, labels needed, saving in labels / dollars / share, each with its interval."""
    rows = []
    for name, s in summary["metrics"][metric]["strategies"].items():
        rows.append(
            [
                name,
                _fmt(s["labels_needed"]),
                _with_interval(s["saving_labels"]),
                _with_interval(s["saving_dollars"], unit="$"),
                _with_interval(s["saving_fraction"], unit="%", scale=100, digits=1),
                f"{summary['melanomas_labelled_at_budget'].get(name, math.nan):.1f}",
            ]
        )
    return rows


SAVING_HEADER = [
    "strategy",
    "labels to reach random's figure",
    "labels saved [95% bootstrap]",
    "dollars saved",
    "share of acquired labels saved",
    "melanomas labelled at budget",
]


def write_report(out: str | Path, points: pd.DataFrame, config: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """Write ``simulation.json``, ``curves.png`` and ``simulation.html``; return the summary."""
    out = Path(out)
    summary = {"config": config, "elapsed_s": elapsed_s, **summarise(points, config)}
    summary = jsonable(summary)
    _io.write_json(out / REPORT_JSON, summary)
    plot_curves(summary, out / CURVES_PNG)
    sections = [
        _html.Section("Learning curves", _html.image(CURVES_PNG, "learning curves")),
    ]
    for metric, block in summary["metrics"].items():
        sections.append(
            _html.Section(
                f"Saving against random ({block['title']})",
                _html.paragraph(
                    f"Random sampling reaches {block['target']:.3f} with the whole budget of {summary['budget']:.0f} "
                    f"labels ({summary['seed_labels']:.0f} seed + rounds). The saving is the budget minus the labels "
                    f"a strategy needs to reach it, at ${summary['label_cost']:.0f} per label; the share is of the "
                    f"{summary['budget'] - summary['seed_labels']:.0f} labels acquired after the seed. Intervals: "
                    f"percentile bootstrap over {summary['repeats']} repeats (coarse with few repeats)."
                )
                + _html.table(SAVING_HEADER, saving_rows(summary, metric)),
            )
        )
    table = points.sort_values(["strategy", "repeat", "labels"])
    sections.append(
        _html.Section(
            "Every round",
            _html.table(list(table.columns), table.itertuples(index=False, name=None)),
        )
    )
    cfg = summary["config"]
    subtitle = (
        f"{cfg['data']}: {cfg['arch']} at {cfg['image_size']} px, seed {cfg['seed_labels']}, "
        f"{cfg['rounds']} rounds of {cfg['round_size']}, {cfg['repeats']} repeats, {elapsed_s / 60:.1f} min"
    )
    _html.write_page(out / REPORT_HTML, "Active learning: the measured label saving", sections, subtitle)
    return summary


__all__ = ["SAVING_HEADER", "labels_to_reach", "plot_curves", "saving_rows", "summarise", "write_report"]
