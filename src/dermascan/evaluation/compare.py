"""``dermascan compare``: several evaluations side by side (baseline vs improved, CNN vs ViT).

Reads each folder's ``metrics.json`` (written by :func:`dermascan.evaluation.evaluate.evaluate`), checks that
it holds every figure the table needs, and writes ``comparison.csv``/``.json``/``.html``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _html, _io
from dermascan.errors import DermaScanError
from dermascan.evaluation.evaluate_report import fmt_estimate
from dermascan.evaluation.report import THRESHOLD_FREE_NOTE

__all__ = ["COMPARE_FIELDS", "MetricsFileError", "compare", "comparison_rows", "format_table", "read_metrics"]

#: Melanoma figures of each decision (argmax, locked threshold) in the table.
COMPARE_FIELDS = ("sensitivity", "specificity", "auroc")
#: Threshold-free figures (the same for both decisions): they pick their own threshold on the split.
THRESHOLD_FREE_FIELDS = ("specificity_at_90_sensitivity",)
_ESTIMATE = ("value", "lo", "hi")


class MetricsFileError(DermaScanError, ValueError):
    """A ``metrics.json`` that cannot be compared: not JSON, or without a figure the table needs."""


def _required() -> list[tuple[str, ...]]:
    """Every key path of metrics.json that the comparison reads."""
    paths: list[tuple[str, ...]] = [("run", "arch"), ("run", "loss"), ("run", "class_weighting"),
                                    ("melanoma", "threshold")]  # fmt: skip
    for prefix in ((), ("argmax",)):
        for f in COMPARE_FIELDS:
            paths += [(*prefix, "melanoma", f, k) for k in _ESTIMATE]
        for f in ("balanced_accuracy", "accuracy"):
            paths += [(*prefix, f, k) for k in _ESTIMATE]
    for f in THRESHOLD_FREE_FIELDS:
        paths += [("threshold_free", f, k) for k in _ESTIMATE]
    return paths


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read an evaluation's ``metrics.json`` and check it has every figure :func:`comparison_rows` reads.

    Raises:
        FileNotFoundError: no such file (the message says which command writes it).
        MetricsFileError: not JSON, not an object, a missing key or a figure that is not a number; the
            message names the file, the key and the fix.
    """
    path = Path(path)
    fix = f"it should be the metrics.json written by `dermascan evaluate --out {path.parent}`; re-run that command"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dermascan evaluate --out {path.parent}` first")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MetricsFileError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); {fix}") from e
    except UnicodeDecodeError as e:
        raise MetricsFileError(f"{path} is not a UTF-8 text file; {fix}") from e
    if not isinstance(m, dict):
        raise MetricsFileError(f"{path} holds a JSON {type(m).__name__}, not an object; {fix}")
    for keys in _required():
        node: Any = m
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                where = ".".join(keys[: depth + 1])
                raise MetricsFileError(f"{path} has no {where!r} (needed for {'.'.join(keys)}); {fix}")
            node = node[key]
        numeric = keys[-1] in _ESTIMATE or keys[-1] == "threshold"
        if numeric and node is not None and (isinstance(node, bool) or not isinstance(node, int | float)):
            raise MetricsFileError(f"{path}: {'.'.join(keys)} is {node!r}, expected a number or null; {fix}")
    return m


def comparison_rows(evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (evaluation, decision): the brief's side-by-side table (baseline vs improved, CNN vs ViT)."""
    rows = []
    for name, m in evals.items():
        for decision, rep in (("argmax", m["argmax"]), ("threshold", m)):
            row = {"model": name, "arch": m["run"]["arch"], "loss": m["run"]["loss"],
                   "weighting": m["run"]["class_weighting"], "decision": decision,
                   "threshold": m["melanoma"]["threshold"] if decision == "threshold" else None}  # fmt: skip
            for f in COMPARE_FIELDS:
                est = rep["melanoma"][f]
                row[f], row[f"{f}_lo"], row[f"{f}_hi"] = est["value"], est["lo"], est["hi"]
            for f in THRESHOLD_FREE_FIELDS:  # the same on both rows: no decision enters it
                est = m["threshold_free"][f]
                row[f], row[f"{f}_lo"], row[f"{f}_hi"] = est["value"], est["lo"], est["hi"]
            for f in ("balanced_accuracy", "accuracy"):
                row[f] = rep[f]["value"]
                row[f"{f}_lo"], row[f"{f}_hi"] = rep[f]["lo"], rep[f]["hi"]
            rows.append(row)
    return rows


def compare(eval_dirs: list[str | Path], out_dir: str | Path | None = None) -> pd.DataFrame:
    """Read several evaluation folders and write ``comparison.csv``/``.json``/``.html`` side by side."""
    evals = {Path(d).name: read_metrics(Path(d) / "metrics.json") for d in eval_dirs}
    table = pd.DataFrame(comparison_rows(evals))
    if out_dir is not None:
        out = Path(out_dir)
        _io.write_csv(out / "comparison.csv", table, float_format="%.4f")
        _io.write_json(out / "comparison.json", table.replace({np.nan: None}).to_dict(orient="records"))
        figures = ("sensitivity", "specificity", "auroc", "balanced_accuracy", "specificity_at_90_sensitivity")
        shown = [(r["model"], r["arch"], r["loss"], r["decision"],
                  *(fmt_estimate({"value": r[f], "lo": r[f + "_lo"], "hi": r[f + "_hi"]}) for f in figures))
                 for r in table.to_dict(orient="records")]  # fmt: skip
        header = ["model", "arch", "loss", "decision", "sensitivity", "specificity", "AUROC", "balanced acc.",
                  "spec. at 90% sens. (threshold-free)"]  # fmt: skip
        body = _html.table(header, shown) + _html.paragraph(THRESHOLD_FREE_NOTE)
        _html.write_page(out / "comparison.html", "Model comparison", [_html.Section("Side by side", body)])
    return table


def format_table(table: pd.DataFrame) -> str:
    """A fixed-width console table of a comparison."""

    def f(v: Any) -> str:
        return "  —  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    head = (f"{'model':<28} {'decision':<9} {'sens':>5} {'(95% CI)':<13} {'spec':>5} {'(95% CI)':<13} "
            f"{'AUROC':>5} {'bal.acc':>7}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in table.to_dict(orient="records"):
        lines.append(f"{r['model'][:28]:<28} {r['decision']:<9} {f(r['sensitivity'])} "
                     f"{'(' + f(r['sensitivity_lo']) + '-' + f(r['sensitivity_hi']) + ')':<13} {f(r['specificity'])} "
                     f"{'(' + f(r['specificity_lo']) + '-' + f(r['specificity_hi']) + ')':<13} {f(r['auroc'])} "
                     f"{f(r['balanced_accuracy']):>7}")  # fmt: skip
    return "\n".join(lines)
