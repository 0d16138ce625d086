"""Throughput of the synthetic dermoscopy generator, end to end (render, JPEG + PNG, CSVs), in images/s.

Usage: python benchmarks/bench_synth.py [--n 400] [--workers 2] [--sizes 64 224]

Not a test: it prints figures. The machine is shared; compare runs made in the same session.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dermascan.data.synthetic import SynthConfig, generate_dataset, render_image


def bench(n: int, size: int, workers: int) -> tuple[float, float]:
    """(images/s writing a dataset with ``workers`` processes, images/s rendering in this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = SynthConfig(n=n, size=size, seed=0, workers=workers)
        start = time.perf_counter()
        generate_dataset(Path(tmp) / "ds", config, progress=False)
        dataset_rate = n / (time.perf_counter() - start)
    single = min(n, 100)
    start = time.perf_counter()
    for i in range(single):
        render_image(config, i)
    return dataset_rate, single / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="images per dataset")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="image sides in pixels")
    args = parser.parse_args()
    print(f"{'size':>5} {'workers':>7} {'dataset img/s':>14} {'render-only img/s (1 process)':>30}")
    for size in args.sizes:
        dataset_rate, render_rate = bench(args.n, size, args.workers)
        print(f"{size:>5} {args.workers:>7} {dataset_rate:>14.1f} {render_rate:>30.1f}")


if __name__ == "__main__":
    main()
