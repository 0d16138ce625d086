"""GPU inference of ResNet-50 and ViT-B/16 with their heat maps: ONNX Runtime's CUDA and TensorRT execution
providers on the fp16 bundle, against eager PyTorch fp16 on CUDA (the reference).

Usage:
    benchmarks/gpu_check.sh                       # on a GPU machine: this program, bounded in time, into $OUT
    python benchmarks/bench_gpu.py [--archs resnet50 vit_b_16] [--batches 1 8 32] [--out gpu.json]
    python benchmarks/bench_gpu.py --device cpu --quick --out smoke.json   # the CPU smoke run the tests use

Each architecture is a random-weight run exported through the real export path
(:func:`dermascan.testing.random_bundle`) with its heat-map output, at fp16 when a runtime here can check an fp16
graph's parity (ONNX Runtime with a GPU provider, or OpenVINO), else at fp32 (said in the report; the PyTorch
rows cast the weights to fp16 either way). Every row is a Predictor (``Predictor.from_path(bundle, runtime,
device, precision)``), and a batch is timed through ``Predictor.infer`` on preprocessed images: float32 from the
host in, logits, maps and features back on the host, the copies to and from the GPU included. ONNX Runtime runs
through IO binding on a GPU provider (:class:`~dermascan.inference.backends.OnnxRuntimeBackend`); one more row
runs the CUDA provider without it, to say what it is worth. Each batch size
is warmed up before it is timed; the first call of a row (TensorRT's engine build, cuDNN's algorithm search) is
reported apart. Each row's outputs are compared with the reference row's on the same batch (largest logit
difference, agreement of the argmax): a fast row that computes something else is not a result.

Rows run row by row across the models (the references first, TensorRT last: its engine builds are the slowest),
and a row that cannot run here (no CUDA provider, no TensorRT libraries, torch without CUDA) or fails says why
in its place instead of stopping the run. Rows that would start after ``--budget-s`` are skipped, said so; the
JSON report is rewritten after every row, so a run cut short still leaves what it measured.

``--device cpu`` builds fp32 bundles and adds CPU rows (eager PyTorch, ONNX Runtime's CPU provider) to the GPU
rows, which then report why they cannot run: the smoke test of this program. Random weights are fine for timing.
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermascan.export.measure import percentiles
from dermascan.inference import Predictor, RuntimeUnavailableError
from dermascan.testing import random_bundle, synthetic_jpeg


@dataclass(frozen=True)
class Row:
    """One way to run a bundle."""

    label: str
    runtime: str
    device: str
    precision: str | None = None
    """``None``: the bundle's own (ONNX Runtime runs the graph as exported)."""
    io_binding: bool | None = None
    """ONNX Runtime only: ``None`` leaves the backend's choice (IO binding on a GPU provider)."""


#: The reference first: each model's first row that runs is the one its other rows are compared with.
GPU_ROWS = (
    Row("torch fp16, eager CUDA", "torch", "cuda", "fp16"),
    Row("onnxruntime CUDA EP", "onnxruntime", "cuda"),
    # what IO binding is worth: the same provider without it
    Row("onnxruntime CUDA EP, no IO binding", "onnxruntime", "cuda", io_binding=False),
    Row("onnxruntime TensorRT EP", "onnxruntime", "tensorrt"),
)
#: ``--device cpu`` adds these, so that the smoke run times something.
CPU_ROWS = (
    Row("torch fp32, eager CPU", "torch", "cpu", "fp32"),
    Row("onnxruntime CPU EP", "onnxruntime", "cpu"),
)
#: ``--quick``: tiny sizes for the CPU smoke run (each still overridable by its flag).
QUICK = {"archs": ["resnet18"], "image_size": 64, "batches": [1, 2], "repeats": 3, "warmup": 1}
FULL = {"archs": ["resnet50", "vit_b_16"], "image_size": 224, "batches": [1, 8, 32], "repeats": 50, "warmup": 5}


# ------------------------------------------------------------------------------------------ environment


def environment() -> dict[str, Any]:
    """GPU (nvidia-smi), Python, package versions and what torch and ONNX Runtime see here."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpus": nvidia_smi(),
        "versions": {},
    }
    for module in ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "tensorrt", "numpy"):
        try:
            info["versions"][module] = str(importlib.import_module(module).__version__)
        except Exception as e:  # a broken install must not stop the report: it is what the report is for
            info["versions"][module] = f"not importable: {type(e).__name__}: {e}"
    try:
        import torch

        cuda = torch.cuda.is_available()
        info["torch"] = {
            "cuda_available": cuda,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "device": torch.cuda.get_device_name(0) if cuda else None,
        }
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        info["onnxruntime"] = {"providers": ort.get_available_providers(), "device": ort.get_device()}
    except ImportError:
        pass
    return info


def nvidia_smi() -> list[dict[str, str]] | str:
    """Each GPU's name, driver and memory, or why nvidia-smi gave none."""
    query = "name,driver_version,memory.total"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"no GPU listed: nvidia-smi {type(e).__name__}: {e}"
    keys = query.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)) for line in done.stdout.splitlines()]


# ---------------------------------------------------------------------------------------------- bundles


def bundle_precision(device: str) -> tuple[str, str | None]:
    """``(precision to export at, why not fp16 or None)``: fp16 is for GPUs, and its export must pass parity on
    a runtime here, so it is tried only where one can check it (before minutes go into an export that fails)."""
    if device == "cpu":
        return "fp32", "--device cpu: the CPU smoke run exports fp32"
    from dermascan.export import parity_runtimes_for

    if parity_runtimes_for("onnx", "fp16"):
        return "fp16", None
    return "fp32", (
        "no runtime here can check an fp16 ONNX graph's parity (onnxruntime has no GPU provider and openvino is "
        "not installed): exported at fp32; the torch rows cast its weights to fp16"
    )


def build_bundles(archs: list[str], size: int, device: str, workdir: Path) -> dict[str, dict[str, Any]]:
    """Export each architecture (or reuse its bundle in ``workdir``); a failed export is recorded, not raised."""
    precision, why = bundle_precision(device)
    bundles = {}
    for arch in archs:
        info: dict[str, Any] = {"arch": arch, "image_size": size, "precision": precision, "not_fp16": why}
        t0 = time.perf_counter()
        print(f"exporting {arch} at {size} px, {precision}, with its heat map ...", flush=True)
        try:
            path = random_bundle(workdir / f"{arch}-{size}-{precision}", arch, size, precision=precision, reuse=True)
            info["path"] = str(path)
        except Exception as e:  # the other model's rows can still run
            info["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        info["export_s"] = round(time.perf_counter() - t0, 1)
        print(f"  {info.get('path', info.get('error'))} ({info['export_s']} s)", flush=True)
        bundles[arch] = info
    return bundles


# ------------------------------------------------------------------------------------------------ timing


def time_row(
    row: Row, bundle: Path, batches: list[int], repeats: int, warmup: int, reference: dict[int, np.ndarray] | None
) -> dict[str, Any]:
    """Load ``bundle`` as ``row`` says and time ``Predictor.infer`` at each batch size.

    Raises:
        RuntimeUnavailableError: the runtime or its provider is not here (the caller reports it).
    """
    t0 = time.perf_counter()
    predictor = Predictor.from_path(
        bundle, runtime=row.runtime, device=row.device, precision=row.precision, batch_size=max(batches)
    )
    if row.io_binding is not None:
        predictor.backend.io_binding = row.io_binding
    out: dict[str, Any] = {"backend": predictor.describe(), "load_s": round(time.perf_counter() - t0, 2)}
    try:
        images = [predictor.prepare(synthetic_jpeg(640, 480, seed=i)).x for i in range(4)]
        x = np.stack(images)  # (4, 3, S, S)
        out["batches"], out["vs_reference"], out["logits"] = {}, {}, {}
        for b in batches:
            xb = np.ascontiguousarray(x[np.arange(b) % len(x)])  # (b, 3, S, S)
            t1 = time.perf_counter()
            first = predictor.infer(xb)
            if b == batches[0]:
                out["first_call_s"] = round(time.perf_counter() - t1, 3)
            if first.logits.shape[0] != b or first.maps is None:
                raise RuntimeError(f"batch {b} gave logits {first.logits.shape} and maps {first.maps is not None}")
            for _ in range(warmup - 1):
                predictor.infer(xb)
            times = []
            for _ in range(repeats):
                t1 = time.perf_counter()
                predictor.infer(xb)
                times.append(time.perf_counter() - t1)
            ms = percentiles([t * 1e3 for t in times])
            out["batches"][str(b)] = {
                "p50_ms": ms["p50"],
                "p99_ms": ms["p99"],
                "mean_ms": ms["mean"],
                "images_per_s": b * len(times) / sum(times),
                "repeats": repeats,
            }
            out["maps_shape"] = list(first.maps.shape)
            out["logits"][b] = first.logits
            if reference is not None and b in reference:
                ref = reference[b]
                out["vs_reference"][str(b)] = {
                    "max_abs_logit_diff": float(np.abs(first.logits - ref).max()),
                    "argmax_agreement": float((first.logits.argmax(1) == ref.argmax(1)).mean()),
                }
    finally:
        predictor.close()
    return out


def run_rows(
    rows: tuple[Row, ...],
    bundles: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    report: dict[str, Any],
    started: float,
) -> None:
    """Every row on every model, appended to ``report["rows"]`` and saved after each one."""
    references: dict[str, tuple[str, dict[int, np.ndarray]]] = {}  # model -> (row label, logits by batch)
    for row in rows:
        for arch, info in bundles.items():
            result: dict[str, Any] = {"model": arch, **asdict(row), "status": "ok", "reason": None}
            spent = time.perf_counter() - started
            print(f"{arch}: {row.label} ...", flush=True)
            if "error" in info:
                result.update(status="failed", reason=f"no bundle: {info['error']}")
            elif spent > args.budget_s:
                result.update(status="skipped", reason=f"time budget spent ({spent:.0f} s > {args.budget_s:.0f} s)")
            else:
                ref = references.get(arch)
                try:
                    result.update(
                        time_row(row, Path(info["path"]), args.batches, args.repeats, args.warmup, ref and ref[1])
                    )
                    logits = result.pop("logits")
                    if ref is None:
                        references[arch] = (row.label, logits)
                    result["reference"] = (ref or references[arch])[0]
                except RuntimeUnavailableError as e:
                    result.update(status="unavailable", reason=str(e))
                except Exception as e:  # one provider's crash (an engine build, a kernel) must not end the run
                    result.update(status="failed", reason=f"{type(e).__name__}: {e}")
                    traceback.print_exc()
                _free_gpu_memory()
            print(f"  {result['status']}" + (f": {result['reason']}" if result["reason"] else ""), flush=True)
            report["rows"].append(result)
            report["elapsed_s"] = round(time.perf_counter() - started, 1)
            save(report, args.out)


def _free_gpu_memory() -> None:
    # The next row must not find the last one's weights and cached blocks still on the GPU.
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ output


def format_table(report: dict[str, Any]) -> str:
    """The rows as a markdown table: one line per model, row and batch size; a row that did not run, one line
    with why."""
    head = (
        "| model | row | provider / device | precision | IO binding | batch | p50 ms | p99 ms | images/s "
        "| x ref p50 | max logit diff vs ref |"
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    ref_p50 = {
        (r["model"], b): s["p50_ms"]
        for r in report["rows"]
        if r["status"] == "ok" and r.get("reference") == r["label"]
        for b, s in r["batches"].items()
    }
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['label']} | {r['status']}: {r['reason']} |" + " |" * 8)
            continue
        be = r["backend"]
        for b, s in r["batches"].items():
            ref = ref_p50.get((r["model"], b))
            speedup = f"{ref / s['p50_ms']:.2f}" if ref else "-"
            diff = r["vs_reference"].get(b, {}).get("max_abs_logit_diff")
            lines.append(
                f"| {r['model']} | {r['label']} | {be['device']} | {be['precision']} | {be.get('io_binding', '-')} "
                f"| {b} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['images_per_s']:.1f} | {speedup} "
                f"| {'-' if diff is None else f'{diff:.3g}'} |"
            )
    refs = {r["model"]: r["reference"] for r in report["rows"] if r["status"] == "ok"}
    lines += ["", "ref (each model's first row that ran): " + "; ".join(f"{m}: {ref}" for m, ref in refs.items())]
    return "\n".join(lines)


def save(report: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)  # a run killed mid-write leaves the last complete report


# -------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the smoke run (see above)")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes: {QUICK}")
    parser.add_argument("--archs", nargs="+", help=f"default {FULL['archs']}")
    parser.add_argument("--image-size", type=int, help=f"input side, default {FULL['image_size']}")
    parser.add_argument("--batches", type=int, nargs="+", help=f"batch sizes, default {FULL['batches']}")
    parser.add_argument("--repeats", type=int, help=f"timed calls per batch size, default {FULL['repeats']}")
    parser.add_argument("--warmup", type=int, help=f"untimed calls per batch size, default {FULL['warmup']}")
    parser.add_argument("--budget-s", type=float, default=240.0, help="start no row after this many seconds")
    parser.add_argument("--out", type=Path, help="JSON report")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dermascan-gpu-check",
        help="where the bundles are exported (and reused by a rerun)",
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.batches) < 1 or args.repeats < 1 or args.warmup < 1:
        parser.error(f"batches, repeats and warmup must be >= 1, got {args.batches}, {args.repeats}, {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    env = environment()
    print(
        "GPU:", env["gpus"] if isinstance(env["gpus"], str) else "; ".join(", ".join(g.values()) for g in env["gpus"])
    )
    print("python", env["python"], "|", ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    for key in ("torch", "onnxruntime"):
        if key in env:
            print(f"{key}: {env[key]}")
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "workdir")}
    report: dict[str, Any] = {"settings": settings, "environment": env, "bundles": {}, "rows": []}
    report["bundles"] = build_bundles(args.archs, args.image_size, args.device, args.workdir)
    save(report, args.out)
    rows = GPU_ROWS + (CPU_ROWS if args.device == "cpu" else ())
    run_rows(rows, report["bundles"], args, report, started)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    save(report, args.out)
    print()
    print(format_table(report))
    ran = sum(r["status"] == "ok" for r in report["rows"])
    print(f"\n{ran}/{len(report['rows'])} rows ran in {report['elapsed_s']} s")
    if args.out is not None:
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
