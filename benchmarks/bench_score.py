"""Archive scoring, local engine against Ray Data: images/s, peak memory, start-up, and when Ray pays off.

Usage: python benchmarks/bench_score.py [--n 2000] [--size 96] [--image-size 64] [--actors 1 2] [--out DIR]

The same synthetic images (``dermascan.data.synthetic``) go through ``score(engine="local")`` and
``score(engine="ray")`` with 1 and 2 actors, each run in a fresh process (a cold start, as a job has), one
after the other. Figures per run:

* start-up: from the ``score`` call to the first scored batch (listing; for Ray: starting the local cluster,
  the actors, shipping and verifying the bundle, the workers' imports);
* images/s: the steady rate after the first batch (what scales with actors and nodes);
* peak memory: the largest proportional set size (PSS, shared pages split between processes) summed over
  the process and every child (Ray's GCS, raylet, workers and actors), sampled every 0.1 s.

The scaling model: a node of this kind scores at the rate measured with all its actors; N such nodes at N
times that (actors share nothing but the driver, which only lists paths and writes rows), after the
start-up measured here. Ray pays off over the local engine on one machine from the archive size where its
start-up is made up: ``M* = (T_ray - T_local) / (1 / R_local - 1 / R_ray(N))``.

Not a test: it prints figures. The machine is shared (2 cores); compare figures of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _tree_pss_mib() -> float:
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # a worker that just exited
            total += p.memory_full_info().pss
    return total / 2**20


def worker(args: dict[str, Any]) -> dict[str, Any]:
    """One engine run in this (fresh) process, with a memory sampler beside it."""
    from dermascan.scoring import score

    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_pss_mib())
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        s = score(
            args["bundle"],
            args["images"],
            args["output"],
            engine=args["engine"],
            actors=args["actors"],
            batch_size=args["batch_size"],
            num_cpus=args["num_cpus"],
        )
    finally:
        stop.set()
        sampler.join()
    return {**args, **s.to_dict(), "peak_mib": peak[0]}


def run_isolated(args: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = Path(f.name)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps({**args, "result": str(result_path)})],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args['engine']} run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return result


def prepare(out: Path, n: int, size: int, arch: str, image_size: int) -> tuple[Path, Path]:
    """The synthetic images and a random-weight bundle (made once, reused by later runs)."""
    from dermascan.data.synthetic import SynthConfig, generate_dataset
    from dermascan.testing import random_bundle

    data = out / f"synth-{n}-{size}"
    if not (data / "metadata.csv").exists():
        t = time.perf_counter()
        generate_dataset(data, SynthConfig(n=n, size=size, seed=0, workers=2), progress=False, overwrite=True)
        print(f"wrote {n} synthetic {size} px images in {time.perf_counter() - t:.0f} s", flush=True)
    bundle = random_bundle(out / f"{arch}-{image_size}", arch, image_size, reuse=True)
    return data / "images", bundle


def scaling_table(local: dict[str, Any], ray_runs: list[dict[str, Any]], nodes: tuple[int, ...]) -> str:
    """Throughput and time for archives of several sizes on N nodes of this kind, and the break-even size."""
    node = max(ray_runs, key=lambda r: r["images_per_s"])  # all of a node's actors: its rate
    one = next((r for r in ray_runs if r["actors"] == 1), node)
    r_local, t_local = local["images_per_s"], local["startup_s"]
    lines = [
        f"per-actor rate (1 actor): {one['images_per_s']:.0f} img/s; node rate ({node['actors']} actor(s) on this "
        f"{os.cpu_count()}-CPU machine): {node['images_per_s']:.0f} img/s; Ray start-up {node['startup_s']:.1f} s; "
        f"local engine: {r_local:.0f} img/s after {t_local:.1f} s",
        f"{'':<16} {'img/s':>8} {'100k images':>12} {'1M images':>10} {'10M images':>11} {'Ray pays off from':>18}",
    ]
    local_times = [t_local + m / r_local for m in (1e5, 1e6, 1e7)]
    lines.append(
        f"{'local, 1 machine':<16} {r_local:>8.0f} "
        + " ".join(f"{_dur(t):>{w}}" for t, w in zip(local_times, (12, 10, 11), strict=True))
        + f" {'-':>18}"
    )
    for n in nodes:
        rate = n * node["images_per_s"]
        times = [node["startup_s"] + m / rate for m in (1e5, 1e6, 1e7)]
        gain = 1 / r_local - 1 / rate
        breakeven = (node["startup_s"] - t_local) / gain if gain > 0 else float("inf")
        pays = "never" if breakeven == float("inf") else f"{breakeven:,.0f} images"
        label = f"ray, {n} node{'s' if n > 1 else ''}"
        lines.append(
            f"{label:<16} {rate:>8.0f} "
            + " ".join(f"{_dur(t):>{w}}" for t, w in zip(times, (12, 10, 11), strict=True))
            + f" {pays:>18}"
        )
    return "\n".join(lines)


def _dur(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic images")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--arch", default="resnet18", help="architecture of the random-weight bundle")
    parser.add_argument("--image-size", type=int, default=64, help="network input side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts to measure")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "dermascan-bench-score")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    images, bundle = prepare(args.out, args.n, args.size, args.arch, args.image_size)
    cpus = os.cpu_count() or 1
    runs = [("local", 1)] + [("ray", k) for k in args.actors]
    results = []
    for engine, actors in runs:
        output = args.out / f"scores-{engine}-{actors}.parquet"
        output.unlink(missing_ok=True)  # a fresh output: every run scores every image
        r = run_isolated(
            {
                "bundle": str(bundle),
                "images": str(images),
                "output": str(output),
                "engine": engine,
                "actors": actors,
                "batch_size": args.batch_size,
                "num_cpus": cpus,
            }
        )
        results.append(r)
        print(
            f"{engine} ({actors} actor(s)): {r['n_scored']} images, start-up {r['startup_s']:.1f} s, "
            f"{r['images_per_s']:.0f} img/s, peak {r['peak_mib']:.0f} MiB",
            flush=True,
        )
    print(
        f"\n{args.n} synthetic {args.size} px JPEGs, {args.arch} at {args.image_size} px (ONNX, runtime auto), "
        f"batch {args.batch_size}, {cpus} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'engine':<16}{'start-up s':>11}{'img/s':>8}{'total s':>9}{'peak MiB':>10}")
    for r in results:
        label = "local" if r["engine"] == "local" else f"ray, {r['actors']} actor(s)"
        print(
            f"{label:<16}{r['startup_s']:>11.1f}{r['images_per_s']:>8.0f}{r['elapsed_s']:>9.1f}{r['peak_mib']:>10.0f}"
        )
    print()
    print(scaling_table(results[0], results[1:], nodes=(1, 2, 4, 8, 16, 64)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        spec = json.loads(sys.argv[sys.argv.index("--worker") + 1])
        out = Path(spec.pop("result"))
        out.write_text(json.dumps(worker(spec)))
    else:
        main()
