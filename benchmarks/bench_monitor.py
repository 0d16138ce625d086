"""Drift false alarms of the monitor on steady simulated traffic, and the design effect it corrects for.

Trains a small model (synthetic 32 px images, melanoma-enriched as the monitor tests' bundle, 4 epochs), locks
its threshold at 97% validation sensitivity, exports it with its monitoring reference, then replays
``--days`` of steady traffic per seed through ``dermascan simulate``'s engine and prints, per seed, the share of
windows with a drift alert (input, embedding or prediction drift; target: at most 5%), which alerts fired, the
spread of the flag-rate z (about 1 when the SD is right) and the mean design effect; then the new-device,
quiet-degradation and case-mix scenarios (seed 0): how many days after the change each alert first fired.

    python benchmarks/bench_monitor.py [--images 2000] [--days 60] [--per-day 100] [--seeds 0,1]

About 14 minutes on 2 cores with the defaults and --seeds 0,1,2 (measured: 13.5; a busy machine takes twice that).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np

from dermascan.monitoring.simulate import SimulationConfig, simulate
from dermascan.testing import MONITOR_PRIORS, monitored_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="training set size")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="monitor-false-alarms-"))
    bundle = monitored_bundle(root, images=args.images, epochs=4)
    print(f"bundle {bundle}\n")
    print("| seed | windows | drift false alarms | alerts (windows) | flag-rate z: mean, SD | design effect |")
    print("|---:|---:|---:|---|---|---:|")
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = SimulationConfig(
            scenario="steady", days=args.days, per_day=args.per_day, class_priors=MONITOR_PRIORS, seed=seed
        )
        report = simulate(cfg, bundle, f"sqlite:///{root / f'steady-{seed}.db'}")
        windows = [w for w in report["windows"] if "prediction_drift" in w]
        fired = collections.Counter(a for w in report["windows"] for a in w["alerts"])
        z = np.array([w["prediction_drift"]["z"] for w in windows])
        deff = np.mean([w["prediction_drift"]["design_effect"] for w in windows])
        sim = report["simulation"]
        print(
            f"| {seed} | {sim['windows_before_change']} | {sim['false_alarm_rate']:.1%} | {dict(fired)} "
            f"| {z.mean():+.2f}, {z.std():.2f} | {deff:.2f} |"
        )

    print("\n| scenario (seed 0, change on day 31) | days to detect (by alert) | expected | held |")
    print("|---|---|---|---|")
    for scenario in ("new-device", "quiet-degradation", "case-mix"):
        cfg = SimulationConfig(
            scenario=scenario, days=args.days, per_day=args.per_day, class_priors=MONITOR_PRIORS, seed=0
        )
        sim = simulate(cfg, bundle, f"sqlite:///{root / f'{scenario}.db'}")["simulation"]
        found = ", ".join(f"{k} {v:g}" for k, v in sim["days_to_detect"].items() if v is not None) or "none"
        print(f"| {scenario} | {found} | {sim['expected']} | {'yes' if sim['passed'] else 'NO'} |")


if __name__ == "__main__":
    main()
