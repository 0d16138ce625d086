"""Measuring one runtime in one process: stage timings through the Predictor, and the plain eager pipeline.

:func:`measure` is what each isolated worker of :func:`dermascan.export.benchmark.run_benchmark` runs; the
statistics helpers are shared by the benchmarks in ``benchmarks/``. Benchmarks print figures; tests assert
behaviour, never timings.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The plain eager-PyTorch pipeline (see :mod:`dermascan.export.benchmark`); not a runtime of the Predictor.
PLAIN_EAGER = "eager-pipeline"
STAGES = ("decode", "preprocess", "inference", "heatmap", "total")


# ------------------------------------------------------------------------------------------ statistics


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, mean and min of a list of milliseconds."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {
            "p50": float("nan"),
            "p95": float("nan"),
            "p99": float("nan"),
            "mean": float("nan"),
            "min": float("nan"),
        }
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(a.mean()), "min": float(a.min())}


def peak_rss_mib() -> float:
    """Peak resident set size of this process (``VmHWM``), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # not Linux: ru_maxrss (kB on Linux, bytes on macOS)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def current_rss_mib() -> float:
    """Resident set size now (``VmRSS``), MiB; NaN where ``/proc`` is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"openvino:bf16"`` -> ``("openvino", "bf16")``; ``"torch"`` -> ``("torch", None)``."""
    if spec == PLAIN_EAGER:
        return spec, None
    runtime, _, precision = spec.partition(":")
    from dermascan.inference.bundle import PRECISIONS
    from dermascan.inference.runtimes import RUNTIMES

    if runtime not in RUNTIMES or (precision and precision not in PRECISIONS):
        raise ValueError(
            f"bad runtime spec {spec!r}: use runtime[:precision], runtime in {RUNTIMES}, precision in {PRECISIONS}"
        )
    return runtime, precision or None


# ------------------------------------------------------------------------------------------- measuring


def measure(
    bundle_dir: str | os.PathLike[str],
    spec: str,
    image: bytes,
    repeats: int = 30,
    warmup: int = 3,
    batch_sizes: Sequence[int] = (8, 16),
    heatmap: bool = True,
    throughput_repeats: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure one runtime in this process (the worker of :func:`run_benchmark`)."""
    from dermascan.inference import Predictor

    runtime, precision = parse_spec(spec)
    load_before = loadavg()
    rss_start = current_rss_mib()
    t0 = time.perf_counter()
    if spec == PLAIN_EAGER:
        predictor: Any = _PlainEagerPipeline(bundle_dir, threads)
    else:
        predictor = Predictor.from_path(
            bundle_dir, runtime=runtime, precision=precision, threads=threads, batch_size=max([1, *batch_sizes])
        )
    load_s = time.perf_counter() - t0
    heatmap = heatmap and predictor.heatmap_kind is not None
    first = time.perf_counter()
    predictor.predict([image], heatmap=heatmap)
    first_ms = (time.perf_counter() - first) * 1e3
    for _ in range(max(0, warmup - 1)):
        predictor.predict([image], heatmap=heatmap)
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    wall: list[float] = []
    for _ in range(repeats):
        t = time.perf_counter()
        (result,) = predictor.predict([image], heatmap=heatmap)
        wall.append((time.perf_counter() - t) * 1e3)
        if not hasattr(result, "timings_ms"):
            raise RuntimeError(f"benchmark image failed: {result}")
        for s in STAGES:
            stages[s].append(result.timings_ms.get(s, 0.0))
    throughput = {}
    for b in batch_sizes:
        batch = [image] * b
        predictor.predict(batch, heatmap=heatmap)  # warm the runtime at this batch size
        times = []
        for _ in range(throughput_repeats):
            t = time.perf_counter()
            predictor.predict(batch, heatmap=heatmap)
            times.append(time.perf_counter() - t)
        throughput[str(b)] = b / float(np.median(times))
    return {
        "spec": spec,
        **predictor.backend.describe(),
        "heatmap": heatmap,
        "load_s": load_s,
        "first_call_ms": first_ms,
        "latency_ms": {s: percentiles(v) for s, v in stages.items()},
        "samples_ms": stages,  # kept so that rounds in several processes can be pooled
        "wall_ms": percentiles(wall),
        "throughput_img_s": throughput,
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
        "torch_imported": "torch" in sys.modules,
        "repeats": repeats,
        # 1-minute load average before and after: above the core count, other processes competed for the CPU.
        "loadavg": [load_before, loadavg()],
    }


class _PlainEagerPipeline:
    """The plain eager-PyTorch pipeline with the Predictor's ``predict`` interface and stage timings.

    What a research script does with a checkpoint: :func:`~dermascan.data.io.load_image` at full scale (no JPEG
    draft: this is the reference the served pipeline is measured against), torchvision's
    :func:`~dermascan.data.transforms.eval_transform`, :func:`~dermascan.explain.run.compute_maps` (Grad-CAM:
    forward and backward; ViT: attention from the forward pass), softmax, and the Predictor's own rendering
    (:func:`~dermascan.explain.render.heatmap_on_image`). Images go one at a time, as in that command.
    "inference" holds the forward and backward passes together (Grad-CAM needs both).
    """

    def __init__(self, bundle_dir: str | os.PathLike[str], threads: int | None = None) -> None:
        import torch

        from dermascan.inference.bundle import load_bundle
        from dermascan.inference.runtimes import torch_model_from_bundle

        if threads:
            torch.set_num_threads(int(threads))
        bundle = load_bundle(bundle_dir)
        self.model = torch_model_from_bundle(bundle)
        self.preprocessing = bundle.card.preprocessing
        self.temperature = bundle.card.policy.temperature or 1.0
        self.heatmap_kind = "gradcam" if bundle.card.family == "cnn" else "attention"
        self.backend = self

    def describe(self) -> dict[str, Any]:
        return {"runtime": PLAIN_EAGER, "precision": "fp32", "device": "cpu"}

    def predict(self, images: Sequence[bytes], heatmap: bool = True) -> list[Any]:
        import torch

        from dermascan.data.io import load_image
        from dermascan.data.transforms import eval_transform
        from dermascan.explain.render import heatmap_on_image
        from dermascan.explain.run import compute_maps

        transform = eval_transform(self.preprocessing)
        results = []
        for data in images:
            t0 = time.perf_counter()
            rgb = load_image(data)
            t1 = time.perf_counter()
            x = transform(rgb)[None]  # (1, 3, S, S)
            t2 = time.perf_counter()
            with torch.no_grad():  # Grad-CAM enables gradients inside
                maps, logits = compute_maps(self.model, x)  # (1, h, w), (1, K)
            probs = torch.softmax(logits.float() / self.temperature, dim=1)[0].numpy()  # (K,)
            t3 = time.perf_counter()
            heatmap_on_image(maps[:1].float().numpy(), 0, rgb.size, self.preprocessing)  # (H, W)
            t4 = time.perf_counter()
            timings = {"decode": t1 - t0, "preprocess": t2 - t1, "inference": t3 - t2, "heatmap": t4 - t3}
            timings = {k: v * 1e3 for k, v in timings.items()}
            results.append(_Timed({**timings, "total": sum(timings.values())}, probs))
        return results


def heatmap_cost(
    bundle_with_maps: str | os.PathLike[str],
    bundle_without_maps: str | os.PathLike[str],
    spec: str,
    image: bytes,
    repeats: int = 30,
    warmup: int = 3,
) -> dict[str, Any]:
    """What the heat map adds to inference on one runtime, measured in this process.

    The same model exported with and without the ``maps`` output is loaded twice and the two are called
    alternately (A, B, A, B ...), so drift in machine load affects both equally. Cost = (inference with maps
    + rendering) / inference of the logits-only graph - 1, from the medians. The same calls give the whole
    answer against the bare forward pass: ``end_to_end_ms`` (decode, preprocessing, inference with maps and
    rendering) over ``logits_only_ms``.

    Returns:
        ``{"spec", "logits_only_ms", "with_maps_ms", "render_ms", "end_to_end_ms", "cost"}`` (medians; cost as a
        fraction).
    """
    from dermascan.inference import Predictor

    runtime, precision = parse_spec(spec)
    a = Predictor.from_path(bundle_with_maps, runtime=runtime, precision=precision)
    b = Predictor.from_path(bundle_without_maps, runtime=runtime, precision=precision)
    if a.heatmap_kind is None or b.heatmap_kind is not None:
        raise ValueError("heatmap_cost needs one bundle with the heat-map output and one without")
    for _ in range(warmup):
        a.predict([image], heatmap=True)
        b.predict([image])
    with_maps, render, bare, whole = [], [], [], []
    for _ in range(repeats):
        (ra,) = a.predict([image], heatmap=True)
        (rb,) = b.predict([image])
        with_maps.append(ra.timings_ms["inference"])
        render.append(ra.timings_ms["heatmap"])
        whole.append(ra.timings_ms["total"])
        bare.append(rb.timings_ms["inference"])
    m_with, m_render, m_bare, m_whole = (float(np.median(v)) for v in (with_maps, render, bare, whole))
    return {
        "spec": spec,
        "logits_only_ms": m_bare,
        "with_maps_ms": m_with,
        "render_ms": m_render,
        "end_to_end_ms": m_whole,
        "cost": (m_with + m_render) / m_bare - 1.0,
    }


class _Timed:
    def __init__(self, timings_ms: dict[str, float], probs: np.ndarray) -> None:
        self.timings_ms, self.probs = timings_ms, probs


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
