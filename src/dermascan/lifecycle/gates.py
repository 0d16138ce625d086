"""Promotion gates: the brief's bar a model must clear before it may become a challenger (brief 4.7).

Inputs are the files the other commands write, read as they are:

* ``metrics.json`` of ``dermascan evaluate`` on the held-out test split: ``melanoma.sensitivity``,
  ``melanoma.specificity`` and ``accuracy`` are Wilson estimates ``{value, lo, hi, n}`` at the locked threshold;
* the ``dermascan bench --out`` JSON: ``results[i].latency_ms.total.p95`` per runtime;
* optionally ``fairness.json`` of ``dermascan audit fairness`` (``attributes.fitzpatrick.max_gap_points``) and the
  bundle's ``manifest.json`` (``parity``: the export's agreement with the eager model).

Each gate compares one figure with one bound, strictly as the brief words it (sensitivity > 0.90, accuracy > 0.84,
latency < 2500 ms). A gate that is switched on but whose figure is missing or undefined fails: no evidence is
never a pass. The bounds come from a YAML file (``--gates``) whose keys are :class:`GateConfig`'s fields.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from dermascan import _io
from dermascan.config import read_yaml_mapping
from dermascan.errors import ConfigError, DermaScanError

#: Bench entries that are references, never what a clinic is served with.
_REFERENCE_SPECS = ("eager-pipeline",)


class GateInputError(DermaScanError, ValueError):
    """A gate input that is not the file it should be (wrong JSON, wrong command's output), with the fix."""


@dataclass
class GateConfig:
    """The bounds of the promotion gates; ``None`` switches an optional gate off.

    Attributes:
        melanoma_sensitivity_min: melanoma sensitivity at the locked threshold must exceed this (brief: 0.90).
        sensitivity_bound: ``point`` compares the estimate, ``lower`` the lower end of its 95% Wilson interval
            (the stricter reading: the bar holds with confidence, not only on this sample).
        accuracy_min: overall accuracy must exceed this (brief: 0.84).
        latency_p95_max_ms: end-to-end p95 latency of one image must be below this (brief: 2500 ms on a T4).
        latency_runtime: the bench runtime the latency gate reads (``auto``: the fastest one measured, which is
            what ``dermascan serve --runtime auto`` picks).
        specificity_min: melanoma specificity at the locked threshold must exceed this.
        skin_type_gap_max_points: the largest Fitzpatrick sensitivity gap (percentage points) must not exceed this;
            needs the fairness audit.
        parity_min_agreement: every export parity check must agree with the eager model on at least this share
            of decisions and of melanoma flags; needs the bundle.
    """

    melanoma_sensitivity_min: float = 0.90
    sensitivity_bound: Literal["point", "lower"] = "point"
    accuracy_min: float = 0.84
    latency_p95_max_ms: float = 2500.0
    latency_runtime: str = "auto"
    specificity_min: float | None = None
    skin_type_gap_max_points: float | None = None
    parity_min_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.sensitivity_bound not in ("point", "lower"):
            raise ConfigError(f"sensitivity_bound must be 'point' or 'lower', got {self.sensitivity_bound!r}")
        for name in ("melanoma_sensitivity_min", "accuracy_min", "specificity_min", "parity_min_agreement"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"{name} is a proportion in [0, 1] (0.9 for 90%), got {v!r}")
        if self.latency_p95_max_ms <= 0:
            raise ConfigError(f"latency_p95_max_ms must be positive, got {self.latency_p95_max_ms!r}")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> GateConfig:
        """The defaults, updated from a YAML file and then from non-``None`` ``overrides``.

        Raises:
            ConfigError: a missing or malformed file, an unknown key or a bad value.
        """
        values = read_yaml_mapping(path, "--gates", ConfigError) if path is not None else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown gate setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class GateResult:
    """One gate: its figure against its bound.

    Attributes:
        name: the gate.
        figure: the measured figure (``None``: missing or undefined).
        bound: the bound, written as the rule (``> 0.900``).
        passed: whether the figure clears the bound.
        detail: where the figure comes from, or why it is missing.
    """

    name: str
    figure: float | None
    bound: str
    passed: bool
    detail: str


@dataclass
class GateReport:
    """All gates of one model."""

    results: list[GateResult]
    config: GateConfig
    model: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "model": self.model,
            "gates": [asdict(r) for r in self.results],
            "config": asdict(self.config),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateReport:
        """Read back :meth:`to_dict` (``gate.json``)."""
        return cls([GateResult(**r) for r in d["gates"]], GateConfig(**d["config"]), d.get("model") or {})

    def table(self) -> str:
        """The pass/fail table as printed by ``dermascan gate``."""
        rows = [("gate", "figure", "bound", "result", "from")]
        for r in self.results:
            fig = "missing" if r.figure is None else f"{r.figure:.4g}"
            rows.append((r.name, fig, r.bound, "PASS" if r.passed else "FAIL", r.detail))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
        verdict = "all gates pass" if self.passed else f"FAILED: {', '.join(self.failed)}"
        return "\n".join([*lines, verdict])


def read_json(path: str | os.PathLike[str], what: str, fix: str) -> dict[str, Any]:
    """A JSON object from ``path``, or a :class:`GateInputError` that says which file it should be."""
    p = Path(path)
    if not p.is_file():
        raise GateInputError(f"{what} {p} not found: {fix}")
    try:
        data = json.loads(p.read_text())
    except ValueError as e:
        raise GateInputError(f"{what} {p} is not JSON ({e}): {fix}") from e
    if not isinstance(data, dict):
        raise GateInputError(f"{what} {p} is not a JSON object: {fix}")
    return data


def _estimate(block: Any) -> dict[str, Any] | None:
    return block if isinstance(block, dict) and block.get("value") is not None else None


def _above(name: str, figure: float | None, bound: float, detail: str, strict: bool = True) -> GateResult:
    ok = figure is not None and (figure > bound if strict else figure >= bound)
    return GateResult(name, figure, f"{'>' if strict else '>='} {bound:.3f}", ok, detail)


def check_gates(
    metrics: dict[str, Any],
    bench: dict[str, Any],
    config: GateConfig | None = None,
    fairness: dict[str, Any] | None = None,
    manifest: dict[str, Any] | None = None,
) -> GateReport:
    """Run every gate of ``config`` on the evaluation, the benchmark and, when given, the audit and the bundle.

    Raises:
        GateInputError: ``metrics`` or ``bench`` is not the output of ``dermascan evaluate`` / ``bench``.
    """
    config = config or GateConfig()
    if "melanoma" not in metrics or "accuracy" not in metrics:
        raise GateInputError("--eval is not a metrics.json of `dermascan evaluate` (no melanoma/accuracy block)")
    if not isinstance(bench.get("results"), list):
        raise GateInputError("--bench is not the JSON of `dermascan bench --out` (no results list)")
    if metrics.get("split") not in (None, "test", "all"):
        raise GateInputError(
            f"--eval was measured on the {metrics['split']!r} split; the gates read the held-out test evaluation "
            "(`dermascan evaluate --split test`)"
        )
    results = [
        _sensitivity_gate(metrics, config),
        _above(
            "accuracy",
            (_estimate(metrics["accuracy"]) or {}).get("value"),
            config.accuracy_min,
            f"test split, n={metrics.get('n')}",
        ),
        _latency_gate(bench, config),
    ]
    if config.specificity_min is not None:
        spec = _estimate(metrics["melanoma"].get("specificity"))
        results.append(
            _above(
                "melanoma specificity",
                None if spec is None else spec["value"],
                config.specificity_min,
                "at the locked threshold" if spec else "undefined on this split (no non-melanoma?)",
            )
        )
    if config.skin_type_gap_max_points is not None:
        results.append(_gap_gate(fairness, config.skin_type_gap_max_points))
    if config.parity_min_agreement is not None:
        results.append(_parity_gate(manifest, config.parity_min_agreement))
    model = {
        "run": (metrics.get("run") or {}).get("path"),
        "arch": (metrics.get("run") or {}).get("arch"),
        "bundle": (bench.get("bundle") or {}).get("version"),
    }
    return GateReport(results, config, model)


def _sensitivity_gate(metrics: dict[str, Any], config: GateConfig) -> GateResult:
    est = _estimate(metrics["melanoma"].get("sensitivity"))
    lower = config.sensitivity_bound == "lower"
    name = "melanoma sensitivity" + (" (lower 95% bound)" if lower else "")
    if est is None:
        return GateResult(name, None, f"> {config.melanoma_sensitivity_min:.3f}", False, "no melanoma in the split")
    figure = est["lo"] if lower else est["value"]
    n_pos = metrics["melanoma"].get("n_pos")
    detail = f"{est['value']:.3f} [{est['lo']:.3f}, {est['hi']:.3f}] on {n_pos} melanomas at the locked threshold"
    return _above(name, figure, config.melanoma_sensitivity_min, detail)


def _latency_gate(bench: dict[str, Any], config: GateConfig) -> GateResult:
    bound = f"< {config.latency_p95_max_ms:.0f} ms"
    ok = [r for r in bench["results"] if "error" not in r and r.get("spec") not in _REFERENCE_SPECS]
    if config.latency_runtime != "auto":
        ok = [r for r in ok if r.get("spec") == config.latency_runtime]
    if not ok:
        what = "any runtime" if config.latency_runtime == "auto" else config.latency_runtime
        return GateResult("latency p95", None, bound, False, f"no bench result for {what}")
    best = min(ok, key=lambda r: r["latency_ms"]["total"]["p95"])
    p95 = float(best["latency_ms"]["total"]["p95"])
    machine = bench.get("machine") or {}
    detail = f"{best['spec']}, one image end to end, on {machine.get('cpu') or machine.get('platform', '?')}"
    return GateResult("latency p95", p95, bound, p95 < config.latency_p95_max_ms, detail)


def _gap_gate(fairness: dict[str, Any] | None, max_points: float) -> GateResult:
    name, bound = "skin-type sensitivity gap", f"<= {max_points:.1f} pts"
    if fairness is None:
        return GateResult(name, None, bound, False, "needs the fairness audit: --fairness fairness.json")
    block = (fairness.get("attributes") or {}).get("fitzpatrick")
    if not block or block.get("max_gap_points") is None:
        why = "skin type not recorded" if "fitzpatrick" in (fairness.get("missing_attributes") or []) else "no group"
        return GateResult(name, None, bound, False, f"{why} in the fairness audit")
    gap = float(block["max_gap_points"])
    worst = ", ".join(block.get("flagged") or []) or "none flagged"
    return GateResult(name, gap, bound, gap <= max_points, f"best group {block.get('best_group')}; {worst}")


def _parity_gate(manifest: dict[str, Any] | None, minimum: float) -> GateResult:
    name = "export parity (worst agreement)"
    if manifest is None:
        return GateResult(name, None, f">= {minimum:.3f}", False, "needs the bundle: --bundle B")
    checks = manifest.get("parity") or []
    if not checks:
        return GateResult(name, None, f">= {minimum:.3f}", False, "the bundle records no parity check")
    worst = min(min(c["primary_agreement"], c["flag_agreement"]) for c in checks)
    runtimes = ", ".join(sorted({c["runtime"] for c in checks}))
    return _above(name, worst, minimum, f"decisions and melanoma flags on {runtimes}", strict=False)


def run_gates(
    eval_path: str | os.PathLike[str],
    bench_path: str | os.PathLike[str],
    config: GateConfig | None = None,
    fairness_path: str | os.PathLike[str] | None = None,
    bundle: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> GateReport:
    """:func:`check_gates` on files; ``eval_path`` may be the evaluation folder. Writes ``out`` (JSON) if given."""
    eval_file = Path(eval_path)
    if eval_file.is_dir():
        eval_file = eval_file / "metrics.json"
    metrics = read_json(eval_file, "--eval", "pass the metrics.json (or folder) of `dermascan evaluate`")
    bench = read_json(bench_path, "--bench", "pass the file written by `dermascan bench --out FILE`")
    fairness = None
    if fairness_path is not None:
        f = Path(fairness_path)
        fairness = read_json(f / "fairness.json" if f.is_dir() else f, "--fairness", "run `dermascan audit fairness`")
    manifest = None
    if bundle is not None:
        from dermascan.inference.bundle import read_manifest

        manifest = read_manifest(bundle)
    report = check_gates(metrics, bench, config, fairness, manifest)
    if out is not None:
        _io.write_json(out, report.to_dict())
    return report


__all__ = ["GateConfig", "GateInputError", "GateReport", "GateResult", "check_gates", "read_json", "run_gates"]
