"""The lifecycle steps ``dermascan demo`` shows after it has exported and benchmarked its winner.

:func:`demo_step` runs, into ``OUT/lifecycle/``: the promotion gates on the winner (which pass on the synthetic set,
which do not), its registration in a local MLflow store (alias ``challenger`` only when every gate passes), and the
A/B decision on a short simulated shadow period (which, short of the stop rule, says ``continue``), with the
decision's simulated false-promotion rate and power.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any


def demo_step(
    out: str | Path,
    run_dir: str | Path,
    eval_dir: str | Path,
    bundle: str | Path,
    bench_json: str | Path,
    fairness_dir: str | Path | None = None,
    shadow_days: float = 7.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Gates, registration and a simulated shadow A/B decision for the demo's winner.

    Args:
        out: the demo folder; everything goes to ``out/lifecycle``.
        run_dir: the winner's run folder.
        eval_dir: its test evaluation (``metrics.json``).
        bundle: its exported bundle.
        bench_json: the ``bench`` report of the bundle.
        fairness_dir: its fairness audit (adds the skin-type gap gate).
        shadow_days: length of the simulated shadow period.
        seed: the simulation's seed.

    Returns:
        ``{"gate_table", "gates_passed", "registered", "abtest", "operating_characteristics", "files"}``.
    """
    from dermascan.lifecycle.abtest import run_abtest
    from dermascan.lifecycle.abtest_sim import Scenario, operating_characteristics, write_shadow_period
    from dermascan.lifecycle.gates import GateConfig, run_gates
    from dermascan.lifecycle.registry import register_bundle

    lc = Path(out) / "lifecycle"
    lc.mkdir(parents=True, exist_ok=True)
    config = GateConfig(skin_type_gap_max_points=5.0 if fairness_dir is not None else None, parity_min_agreement=0.99)
    report = run_gates(eval_dir, bench_json, config, fairness_dir, bundle, lc / "gate.json")
    uri = f"sqlite:///{(lc / 'mlflow.db').resolve()}"
    version = register_bundle(
        bundle, uri, alias="challenger" if report.passed else None, run_dir=run_dir, gate_report=report.to_dict()
    )
    # A short period, well before the stop rule: about 40 confirmed melanomas in a week (the brief's 10% shadow
    # share of a network's scans); the challenger truly finds 3 points more melanomas.
    shadow_url = f"sqlite:///{(lc / 'shadow.db').resolve()}"
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=shadow_days)
    scenario = Scenario(challenger_sensitivity=0.93, melanomas=40)
    write_shadow_period(shadow_url, scenario, days=shadow_days, start=start, seed=seed)
    ab = run_abtest(shadow_url, lc / "abtest")
    oc = operating_characteristics(repeats=20000, seed=seed)
    return {
        "gate_table": report.table(),
        "gates_passed": report.passed,
        "gates_failed": report.failed,
        "registered": {
            "tracking_uri": uri,
            "name": version.name,
            "version": version.version,
            "alias": "challenger" if report.passed else None,
            "digest": version.digest,
            "data_fingerprint": version.tags.get("data_fingerprint"),
        },
        "abtest": {"verdict": ab["verdict"], "reasons": ab["reasons"], "stop_rule": ab["stop_rule"]},
        "operating_characteristics": {k: v["rate"] for k, v in oc.items()},
        "files": {"gates": str(lc / "gate.json"), "abtest": str(lc / "abtest" / "abtest.html")},
    }


__all__ = ["demo_step"]
