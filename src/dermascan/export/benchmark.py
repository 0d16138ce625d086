"""``dermascan bench``: end-to-end latency, throughput and memory of a bundle on every runtime present.

Every figure comes from the :class:`~dermascan.inference.Predictor` (no second inference path): an encoded
JPEG goes in, probabilities and the heat map come out, and the Predictor's own per-image stage timings
(``time.perf_counter``) are collected: decode, preprocess, inference (runtime + calibration + decision),
heat map (rendered over the original image) and total. At batch 1 these are the latency a clinic sees; p50,
p95 and p99 over ``repeats`` runs after ``warmup`` runs. Throughput is images per second through
``predict`` at larger batches (decoding in 2 threads, as ``dermascan predict`` does).

Runtimes are given as ``runtime[:precision]``: ``torch`` (eager fp32: the reference), ``torch:bf16``,
``torch-compile``, ``onnxruntime``, ``openvino``, ``openvino:bf16``, ``torchscript``. Two references, both
on the bundle's own fp32 weights, are measured in the same run:

* ``torch`` (:data:`REFERENCE`): the Predictor on eager PyTorch. Only the runtime differs from the others,
  the decoding, preprocessing and rendering code is the same: ``speedup_p50`` isolates the runtime.
* ``eager-pipeline`` (:data:`PLAIN_EAGER`): the plain eager-PyTorch pipeline, as ``dermascan explain`` runs a
  checkpoint and as a research script would: PIL decode, torchvision's eval transform on tensors, a forward
  and a backward pass for Grad-CAM (a ViT: a forward pass that keeps its attention), then the same
  rendering. ``speedup_vs_pipeline_p50`` is what serving a bundle gains over it.

Peak memory, measured fairly: each runtime runs in its own fresh Python process (``isolate=True``, the
default), one after the other so they never compete for the cores. The worker reads its peak resident set
(``VmHWM`` in ``/proc/self/status``) at the end; it includes the interpreter, numpy/PIL, the runtime's
libraries, the model and the activations, which is what a serving process of that runtime costs. Workers for
ONNX Runtime and OpenVINO never import torch (recorded as ``torch_imported``), as in serving. With
``isolate=False`` all runtimes share this process and the memory figure is only an upper bound.

Benchmarks print figures; tests assert behaviour, never timings.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermascan.export.measure import (
    PLAIN_EAGER,
    STAGES,
    measure,
    parse_spec,
    percentiles,
)
from dermascan.testing import synthetic_jpeg

#: Runtimes measured by default (those not present, or not able to run the bundle, are skipped).
DEFAULT_SPECS = (PLAIN_EAGER, "torch", "torch:bf16", "onnxruntime", "openvino", "openvino:bf16")
#: The reference ``speedup_p50`` is relative to: the Predictor on eager PyTorch, fp32.
REFERENCE = "torch"


def _measure_isolated(
    bundle_dir: Path, spec: str, image_path: Path, kwargs: dict[str, Any], timeout: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = {"bundle": str(bundle_dir), "spec": spec, "image": str(image_path), "out": str(out), **kwargs}
        proc = subprocess.run(
            [sys.executable, "-m", "dermascan.export.benchmark", "--worker", json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"spec": spec, "error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}
        return json.loads(out.read_text())


def runnable_specs(bundle_dir: str | os.PathLike[str], specs: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``specs`` into those that can run this bundle here and ``{spec: why not}`` for the rest."""
    from dermascan.inference.bundle import read_manifest
    from dermascan.inference.runtimes import unavailable_reason

    manifest = read_manifest(bundle_dir)
    fmt, has_weights = manifest["model"]["format"], bool(manifest.get("weights"))
    ok, skipped = [], {}
    for spec in specs:
        runtime, precision = parse_spec(spec)
        # the plain eager pipeline runs the state dict on torch, like the torch runtime
        why = unavailable_reason(
            "torch" if spec == PLAIN_EAGER else runtime, fmt, precision or manifest["model"]["precision"], has_weights
        )
        if why is None:
            ok.append(spec)
        else:
            skipped[spec] = why
    return ok, skipped


def machine_info() -> dict[str, Any]:
    """CPU model, core count and the instruction sets that decide bf16 speed."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["cpu"] = model
        info["bf16"] = {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}
    except OSError:
        pass
    return info


def run_benchmark(
    bundle_dir: str | os.PathLike[str],
    runtimes: Sequence[str] | None = None,
    out_json: str | os.PathLike[str] | None = None,
    image: str | os.PathLike[str] | bytes | None = None,
    repeats: int = 30,
    warmup: int = 3,
    batch_sizes: Sequence[int] = (8, 16),
    heatmap: bool = True,
    isolate: bool = True,
    throughput_repeats: int = 3,
    threads: int | None = None,
    timeout: float = 900.0,
    with_reference: bool = True,
    rounds: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Benchmark a bundle on several runtimes, side by side, with eager PyTorch as the reference.

    Args:
        bundle_dir: the bundle.
        runtimes: specs ``runtime[:precision]`` (default :data:`DEFAULT_SPECS`); the reference ``torch`` is
            added when missing. Specs that cannot run here are skipped and listed under ``skipped``.
        out_json: also write the report there.
        image: the test image (path or bytes); default a synthetic 1024 x 768 JPEG.
        repeats: timed single-image predictions per runtime.
        warmup: untimed predictions first (the first call is reported apart: ``first_call_ms``).
        batch_sizes: batch sizes for throughput.
        heatmap: include the heat map (as served); ignored for a bundle without heat-map output.
        isolate: one fresh process per runtime (fair peak memory; see the module docstring).
        throughput_repeats: timed batches per batch size (median used).
        threads: runtime intra-op threads (``None``: each runtime's default, all cores).
        timeout: seconds per isolated runtime.
        with_reference: add the two references when ``runtimes`` lacks them (for speed-ups): eager PyTorch
            in the Predictor and the plain eager pipeline.
        rounds: measure every runtime this many times, in a rotated order each round (A B C, B C A, ...), and
            pool the rounds: the machine's load drifts over minutes, and rounds expose every runtime to the
            same drift. Each round's speed-up is kept (``speedup_p50_rounds``) to show the spread.

    Returns:
        ``{"bundle", "image", "machine", "reference", "results": [per runtime], "skipped": {spec: why}}``;
        each result has ``latency_ms[stage][p50|p95|p99|mean|min]``, ``throughput_img_s``, ``peak_rss_mib``,
        ``speedup_p50`` (reference p50 total / this p50 total) and ``torch_imported``.
    """
    bundle_dir = Path(bundle_dir)
    specs = list(runtimes) if runtimes is not None else list(DEFAULT_SPECS)
    if with_reference:
        specs = [PLAIN_EAGER, REFERENCE] + [s for s in specs if s not in (PLAIN_EAGER, REFERENCE)]
    specs, skipped = runnable_specs(bundle_dir, specs)
    data = image if isinstance(image, bytes) else (Path(image).read_bytes() if image else synthetic_jpeg())
    with Image.open(io.BytesIO(data)) as im:
        image_info = {"size": list(im.size), "format": im.format, "bytes": len(data)}
    kwargs = {
        "repeats": repeats,
        "warmup": warmup,
        "batch_sizes": list(batch_sizes),
        "heatmap": heatmap,
        "throughput_repeats": throughput_repeats,
        "threads": threads,
    }
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    by_round: list[dict[str, dict[str, Any]]] = []
    from tqdm import tqdm

    bar = tqdm(total=rounds * len(specs), desc="bench", unit="runtime", disable=not progress)
    with tempfile.TemporaryDirectory() as tmp, bar:
        image_path = Path(tmp) / "image.bin"
        image_path.write_bytes(data)
        for k in range(rounds):
            shift = k % len(specs) if specs else 0
            this_round = {}
            for spec in specs[shift:] + specs[:shift]:
                bar.set_postfix_str(f"round {k + 1}/{rounds}: {spec}")
                if isolate:
                    this_round[spec] = _measure_isolated(bundle_dir, spec, image_path, kwargs, timeout)
                else:
                    try:
                        this_round[spec] = measure(bundle_dir, spec, data, **kwargs)
                    except Exception as e:  # one broken runtime must not hide the others' figures
                        this_round[spec] = {"spec": spec, "error": f"{type(e).__name__}: {e}"}
                bar.update()
            by_round.append(this_round)
    results = [_pool([r[spec] for r in by_round]) for spec in specs]
    ref = next((r for r in results if r["spec"] == REFERENCE and "error" not in r), None)
    plain = next((r for r in results if r["spec"] == PLAIN_EAGER and "error" not in r), None)
    for r in results:
        if "error" not in r and plain is not None:
            r["speedup_vs_pipeline_p50"] = plain["latency_ms"]["total"]["p50"] / r["latency_ms"]["total"]["p50"]
        if "error" not in r and ref is not None:
            r["speedup_p50"] = ref["latency_ms"]["total"]["p50"] / r["latency_ms"]["total"]["p50"]
            r["speedup_p95"] = ref["latency_ms"]["total"]["p95"] / r["latency_ms"]["total"]["p95"]
            r["speedup_p50_rounds"] = [
                rnd[REFERENCE]["latency_ms"]["total"]["p50"] / rnd[r["spec"]]["latency_ms"]["total"]["p50"]
                for rnd in by_round
                if "error" not in rnd[REFERENCE] and "error" not in rnd[r["spec"]]
            ]
    from dermascan.inference.bundle import read_manifest

    manifest = read_manifest(bundle_dir)
    report = {
        "bundle": {
            "path": str(bundle_dir),
            "name": manifest.get("name"),
            "version": manifest.get("version"),
            "architecture": manifest.get("architecture"),
            "format": manifest["model"]["format"],
            "precision": manifest["model"]["precision"],
            "heatmap": manifest["model"].get("heatmap"),
            "input_size": manifest["preprocessing"]["input_size"],
        },
        "image": image_info,
        "machine": machine_info(),
        "settings": {**kwargs, "isolate": isolate, "rounds": rounds},
        "reference": REFERENCE,
        "results": results,
        "skipped": skipped,
    }
    if out_json is not None:
        from dermascan import _io

        _io.write_json(out_json, report)
    return report


def _pool(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One runtime's measurements from several rounds as one: latency samples pooled, throughput the median,
    peak memory the largest, load averages listed. A round that failed is reported when all failed."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[0]
    if len(ok) == 1:
        return ok[0]
    samples = {s: [v for r in ok for v in r["samples_ms"][s]] for s in STAGES}
    pooled = dict(ok[0])
    pooled.update(
        latency_ms={s: percentiles(v) for s, v in samples.items()},
        samples_ms=samples,
        throughput_img_s={
            b: float(np.median([r["throughput_img_s"][b] for r in ok])) for b in ok[0]["throughput_img_s"]
        },
        peak_rss_mib=max(r["peak_rss_mib"] for r in ok),
        first_call_ms=float(np.median([r["first_call_ms"] for r in ok])),
        load_s=float(np.median([r["load_s"] for r in ok])),
        repeats=sum(r["repeats"] for r in ok),
        loadavg=[min(a for r in ok for a in r["loadavg"]), max(a for r in ok for a in r["loadavg"])],
        rounds=len(ok),
    )
    return pooled


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table: per-stage p50, total p50/p95/p99, speed-up, throughput, memory."""
    b = report["bundle"]
    bs = report["settings"]["batch_sizes"]
    lines = [
        "x eager: speed-up over the Predictor on eager PyTorch (same code, only the runtime differs); x plain: "
        f"over the plain eager pipeline ({PLAIN_EAGER}: torchvision transform, forward + backward Grad-CAM)",
        f"{b['architecture']} {b['input_size']}px {b['format']} ({b['precision']}), heat map {b['heatmap']}, "
        f"image {report['image']['size'][0]}x{report['image']['size'][1]} {report['image']['format']}; "
        f"{report['machine'].get('cpu', '')} x{report['machine'].get('cpus')}",
        f"{'runtime':<16}{'decode':>7}{'prep':>6}{'infer':>8}{'heat':>6}{'total p50':>10}{'p95':>8}{'p99':>8}"
        f"{'x eager':>8}{'x plain':>8}"
        + "".join(f"{f'img/s@{n}':>10}" for n in bs)
        + f"{'peak MiB':>9}{'torch':>6}"
        + "  load (1-min avg, low/high)",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"{r['spec']:<16}error: {r['error']}")
            continue
        lat = r["latency_ms"]
        lines.append(
            f"{r['spec']:<16}{lat['decode']['p50']:7.1f}{lat['preprocess']['p50']:6.1f}{lat['inference']['p50']:8.1f}"
            f"{lat['heatmap']['p50']:6.1f}{lat['total']['p50']:10.1f}{lat['total']['p95']:8.1f}"
            f"{lat['total']['p99']:8.1f}{r.get('speedup_p50', float('nan')):8.2f}"
            f"{r.get('speedup_vs_pipeline_p50', float('nan')):8.2f}"
            + "".join(f"{r['throughput_img_s'].get(str(n), float('nan')):10.1f}" for n in bs)
            + f"{r['peak_rss_mib']:9.0f}{'yes' if r['torch_imported'] else 'no':>6}"
            + f"{r['loadavg'][0]:6.1f}/{r['loadavg'][1]:.1f}"
        )
    for spec, why in report.get("skipped", {}).items():
        lines.append(f"{spec:<16}skipped: {why}")
    if report["settings"].get("rounds", 1) > 1:
        lines.append(
            f"{report['settings']['rounds']} rounds in rotated order, latency samples pooled; "
            "x eager in each round: "
            + "; ".join(
                f"{r['spec']} " + " ".join(f"{x:.2f}" for x in r.get("speedup_p50_rounds", []))
                for r in report["results"]
                if "error" not in r and r["spec"] != report["reference"]
            )
        )
    return "\n".join(lines)


def _worker(argv: list[str]) -> int:
    args = json.loads(argv[argv.index("--worker") + 1])
    image = Path(args.pop("image")).read_bytes()
    out = Path(args.pop("out"))
    result = measure(args.pop("bundle"), args.pop("spec"), image, **args)
    out.write_text(json.dumps(result))
    return 0


__all__ = [
    "DEFAULT_SPECS",
    "REFERENCE",
    "format_table",
    "machine_info",
    "run_benchmark",
    "runnable_specs",
]


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.exit(_worker(sys.argv))
    sys.exit("usage: `dermascan bench --bundle B` (this module's command line is the benchmark worker)")
