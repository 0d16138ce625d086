"""End-to-end latency of ResNet-50 and ViT-B/16 at 224 px with heat maps, on every runtime present.

Usage: python benchmarks/bench_latency.py [--archs resnet50 vit_b_16] [--repeats 20] [--out bench_latency.json]

For each architecture: a random-weight run is exported to an ONNX bundle twice, with the heat-map output
and without it, then :func:`dermascan.export.benchmark.run_benchmark` times a 1024 x 768 JPEG going in and
calibrated probabilities plus the heat map coming out, through the Predictor, on eager PyTorch (the
reference), PyTorch bf16, ONNX Runtime, OpenVINO fp32 and OpenVINO bf16, each in its own process. The
heat map's cost on each runtime is ``(inference with maps + rendering) / inference of the logits-only graph
- 1``, with the two bundles called alternately in one process (:func:`heatmap_cost`).

Targets (ratios within one run, the machine is shared and noisy):
  * ResNet-50 end to end at least 3x faster than the eager-PyTorch pipeline at p50;
  * the heat map adds under 10% to the inference time;
  * ViT-B/16 with its attention map under 100 ms at p95.

Random weights are fine for timing. Not a test: it prints figures (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from dermascan.export.benchmark import (
    format_table,
    heatmap_cost,
    interleaved_latency,
    random_bundle,
    run_benchmark,
    synthetic_jpeg,
)

SPECS = ["torch", "torch:bf16", "onnxruntime", "openvino", "openvino:bf16"]
#: Runtimes whose heat-map cost is measured (eager PyTorch is the reference, not a serving candidate).
COST_SPECS = ["onnxruntime", "openvino", "openvino:bf16"]


def _p(result: dict[str, Any], stage: str, q: str = "p50") -> float:
    return float(result["latency_ms"][stage][q])


def bench_arch(arch: str, workdir: Path, repeats: int, batch_sizes: list[int], threads: int | None,
               specs: list[str]) -> dict[str, Any]:
    """Export ``arch`` with and without heat maps, benchmark the first and measure the heat map's cost."""
    t0 = time.perf_counter()
    with_maps = random_bundle(workdir / f"{arch}-maps", arch, 224)
    no_maps = random_bundle(workdir / f"{arch}-logits", arch, 224, heatmap=False)
    export_s = time.perf_counter() - t0
    full = run_benchmark(with_maps, runtimes=specs, repeats=repeats, batch_sizes=batch_sizes, throughput_repeats=1,
                         threads=threads)
    image = synthetic_jpeg()
    # The same runtimes called round-robin in one process: ratios robust to the load drifting between runs.
    side_by_side = interleaved_latency(with_maps, specs, image, repeats=repeats)
    costs = []
    for spec in [s for s in specs if s in COST_SPECS]:
        try:
            costs.append(heatmap_cost(with_maps, no_maps, spec, image, repeats=repeats))
        except Exception as e:  # a runtime missing here
            costs.append({"spec": spec, "error": f"{type(e).__name__}: {e}"})
    return {"arch": arch, "export_s": export_s, "benchmark": full, "interleaved": side_by_side,
            "heatmap_cost": costs}


def summarise(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Side-by-side latency, heat-map cost and the three targets, from the interleaved measurements."""
    lines = []
    for arch, run in runs.items():
        inter = run["interleaved"]
        lat = inter["results"]
        load = inter["loadavg"]
        lines.append(f"\n{arch}: runtimes called in turn in one process (load {load[0]:.1f} -> {load[1]:.1f})")
        lines.append(f"  {'runtime':<14}{'decode':>7}{'prep':>6}{'infer':>8}{'heat':>6}{'p50':>8}{'p95':>8}"
                     f"{'p99':>8}{'x eager':>9}")
        for spec, r in lat.items():
            lines.append(f"  {spec:<14}{r['decode']['p50']:7.1f}{r['preprocess']['p50']:6.1f}"
                         f"{r['inference']['p50']:8.1f}{r['heatmap']['p50']:6.1f}{r['total']['p50']:8.1f}"
                         f"{r['total']['p95']:8.1f}{r['total']['p99']:8.1f}"
                         f"{inter.get('speedup_p50', {}).get(spec, float('nan')):9.2f}")
        costs = {c["spec"]: c for c in run["heatmap_cost"] if "error" not in c}
        lines.append("  heat-map cost (maps in the graph + rendering vs the logits-only graph, medians):")
        for c in costs.values():
            lines.append(f"  {c['spec']:<14} logits-only {c['logits_only_ms']:7.1f} ms, with maps "
                         f"{c['with_maps_ms']:7.1f} ms, render {c['render_ms']:5.2f} ms -> {100 * c['cost']:+5.1f}%")
        served = [spec for spec in lat if spec != "torch"]
        best = min(served, key=lambda spec: lat[spec]["total"]["p50"])
        if arch == "resnet50" and "torch" in lat:
            speedup = inter["speedup_p50"][best]
            verdict = "MET" if speedup >= 3 else "NOT MET"
            lines.append(f"  TARGET resnet50 >= 3x eager at p50: {best} {lat[best]['total']['p50']:.1f} ms vs eager "
                         f"{lat['torch']['total']['p50']:.1f} ms = {speedup:.2f}x -> {verdict}")
            if best in costs:
                cost = costs[best]["cost"]
                lines.append(f"  TARGET heat map < 10% of inference on {best}: {100 * cost:+.1f}% -> "
                             f"{'MET' if cost < 0.10 else 'NOT MET'}")
        if arch == "vit_b_16":
            best95 = min(served, key=lambda spec: lat[spec]["total"]["p95"])
            v = lat[best95]["total"]["p95"]
            lines.append(f"  TARGET vit_b_16 with attention map < 100 ms p95: {best95} {v:.1f} ms -> "
                         f"{'MET' if v < 100 else 'NOT MET'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet50", "vit_b_16"])
    parser.add_argument("--repeats", type=int, default=20, help="timed single-image predictions per runtime")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[8, 16], help="throughput batch sizes")
    parser.add_argument("--runtimes", nargs="+", default=SPECS, help="runtime[:precision] specs to compare")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of every runtime (default: each runtime's own, all cores)")
    parser.add_argument("--out", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            runs[arch] = bench_arch(arch, Path(tmp), args.repeats, args.batch_sizes, args.threads, args.runtimes)
            print(f"\n{format_table(runs[arch]['benchmark'])}")
            print(f"(export of both bundles: {runs[arch]['export_s']:.0f} s)")
    print("\n".join(summarise(runs)))
    if args.out is not None:
        args.out.write_text(json.dumps(runs, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
