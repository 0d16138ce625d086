"""How long `dermascan active-learn simulate` takes at its default size, on this machine.

Runs one repeat with one round per strategy at the default image size, model and epochs (or reads the
``points.csv`` of a simulation already run, which has a ``seconds`` column per round), then extrapolates to
the default simulation: repeats x (seed model + every strategy's rounds), a round's time taken as growing in
proportion to the labelled set it fine-tunes on (an upper bound: scoring shrinks with the pool). Prints the
measured parts and the estimate.

    python benchmarks/bench_active_learning.py --data DATA          # DATA: e.g. `dermascan synth --n 2400 --size 32`
    python benchmarks/bench_active_learning.py --points S/points.csv
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from dermascan.active_learning.simulate import POINTS_FILE, SimulationConfig, simulate


def estimate(points: pd.DataFrame, default: SimulationConfig) -> dict[str, float]:
    """Extrapolated seconds of the default simulation from measured seed and first-round times."""
    seed_s = float(points.loc[points["round"] == 0, "seconds"].median())
    first = points[points["round"] == 1]
    labels_first = float(first["labels"].iloc[0])
    # Seconds per labelled image of a round, per measured strategy; strategies not measured cost their mean.
    per_label = first.groupby("strategy")["seconds"].median() / labels_first
    measured = {k: float(v) for k, v in per_label.items()}
    rate = [measured.get(name, float(per_label.mean())) for name in default.strategies]
    labels = sum(default.seed_labels + k * default.round_size for k in range(1, default.rounds + 1))
    total = sum(r * labels for r in rate)
    return {"seed_s": seed_s, "rounds_s": total, "total_s": default.repeats * (seed_s + total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="labelled data set to run one short simulation on")
    parser.add_argument("--points", help="points.csv of a simulation already run (with a seconds column)")
    args = parser.parse_args()
    if not args.points and not args.data:
        parser.error("give --data or --points")
    default = SimulationConfig(data=args.data or "", out="")
    if args.points:
        points = pd.read_csv(args.points)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            simulate(SimulationConfig(data=args.data, out=tmp, repeats=1, rounds=1), progress=True)
            points = pd.read_csv(Path(tmp) / POINTS_FILE)
    if "seconds" not in points.columns:
        raise SystemExit("points.csv has no seconds column: it was written before rounds were timed")
    print(points[points["round"] <= 1].groupby(["strategy", "round"])["seconds"].median().round(1).to_string())
    e = estimate(points, default)
    print(
        f"default simulation ({default.repeats} repeats, {len(default.strategies)} strategies, {default.rounds} rounds "
        f"of {default.round_size} after {default.seed_labels}): seed {e['seed_s']:.0f} s, one repeat's rounds "
        f"{e['rounds_s']:.0f} s, total about {e['total_s'] / 60:.1f} min on this machine"
    )


if __name__ == "__main__":
    main()
