"""A release: evaluate -> export -> bench -> gate -> register as challenger, stopping at the first failure.

``dermascan release --run R --out DIR`` runs the steps the brief's CI/CD pipeline names (4.7, "Validation"), each
through the command's own library function, into one folder::

    DIR/eval/         metrics.json, report.html ...   (dermascan evaluate, test split, locked operating point)
    DIR/fairness/     fairness.json ...                (only when the gates ask for the skin-type gap)
    DIR/bundle/       the exported, parity-checked bundle (dermascan export)
    DIR/bench.json    latency per runtime               (dermascan bench)
    DIR/gate.json     the gate table                    (dermascan gate)
    DIR/release.json  every step's outcome, and the registered version when all passed

A failed step (a gate, a parity check, a missing file) ends the release there: nothing is registered, and
``release.json`` says which step failed and why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dermascan import _io
from dermascan.lifecycle.gates import GateConfig, GateReport


def release(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    gates: GateConfig | None = None,
    tracking_uri: str | None = None,
    name: str = "dermascan",
    bench_runtimes: Sequence[str] = ("onnxruntime",),
    bench_repeats: int = 30,
    version: str | None = None,
    *,
    max_parity_images: int | None = 400,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the release steps; see the module docstring.

    Args:
        run_dir: the trained run.
        out_dir: the release folder.
        gates: the gate bounds (the brief's by default).
        tracking_uri: MLflow store to log the evaluation into and register the bundle in (``None``: no registry
            step, the release ends at the gates).
        name: the registered model's name.
        bench_runtimes: runtimes the latency gate may read (those a clinic would be served with).
        bench_repeats: timed single-image predictions per runtime.
        version: the bundle's version (default: the export's).
        max_parity_images: validation images the export's parity check runs on (as ``dermascan demo`` does).
        progress: progress bars.

    Returns:
        The ``release.json`` record: ``{"passed", "failed_step", "steps": [...], "registered"}``.
    """
    from dermascan.evaluation.evaluate import audit_fairness, evaluate
    from dermascan.export import export_bundle
    from dermascan.export.benchmark import run_benchmark
    from dermascan.lifecycle.gates import run_gates

    run, out = Path(run_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gates = gates or GateConfig()
    record: dict[str, Any] = {"run": str(run), "passed": False, "failed_step": None, "steps": [], "registered": None}
    report: GateReport | None = None

    def step(name_: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:
            record["steps"].append({"step": name_, "ok": False, "error": f"{type(e).__name__}: {e}"})
            record["failed_step"] = name_
            _io.write_json(out / "release.json", record)
            raise
        record["steps"].append({"step": name_, "ok": True, "seconds": round(time.perf_counter() - t0, 1)})
        return result

    step("evaluate", lambda: evaluate(run, out / "eval", split="test", progress=progress))
    fairness = None
    if gates.skin_type_gap_max_points is not None:
        step("fairness", lambda: audit_fairness(run, out / "fairness", progress=progress))
        fairness = out / "fairness"
    bundle = step(
        "export",
        lambda: export_bundle(
            run, out / "bundle", version=version, overwrite=True, max_parity_images=max_parity_images, progress=progress
        ),
    )
    step(
        "bench",
        lambda: run_benchmark(
            bundle, runtimes=list(bench_runtimes), out_json=out / "bench.json", repeats=bench_repeats,
            with_reference=False, progress=progress,
        ),
    )  # fmt: skip
    report = step(
        "gate", lambda: run_gates(out / "eval", out / "bench.json", gates, fairness, bundle, out / "gate.json")
    )
    record["gates"] = report.to_dict()
    if not report.passed:
        record["steps"][-1]["ok"] = False
        record["failed_step"] = "gate"
        _io.write_json(out / "release.json", record)
        return record
    if tracking_uri is not None:
        from dermascan.lifecycle.registry import log_evaluation, log_training, register_bundle

        def _register() -> Any:
            log_training(run, tracking_uri)
            log_evaluation(run, out / "eval", tracking_uri)
            return register_bundle(bundle, tracking_uri, name, "challenger", run_dir=run, gate_report=report.to_dict())

        v = step("register", _register)
        record["registered"] = {"name": v.name, "version": v.version, "alias": "challenger", "digest": v.digest}
    record["passed"] = True
    _io.write_json(out / "release.json", record)
    return record


__all__ = ["release"]
