"""What an int8 bundle's float layers cost in speed: the forward pass of a run's graph at fp32, all-int8 and with
the float layers its int8 bundle ships (``manifest.model.quantization.float_layers``), on ONNX Runtime and
OpenVINO, batch 1 and 16.

    python benchmarks/bench_int8_ladder.py --run demo_out/runs/cnn_focal_sqrt --bundle demo_out/bundle-int8

Times the runtime backends directly on random inputs (the graph's own cost; calibration uses random inputs too,
which does not change the speed). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dermascan.export import export_bundle
from dermascan.export.quantize import Int8Graph
from dermascan.inference.backends import OnnxRuntimeBackend, OpenVINOBackend


def median_ms(backend: object, x: np.ndarray, n: int) -> float:
    for _ in range(20):
        backend.run(x)  # type: ignore[attr-defined]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        backend.run(x)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the trained run folder")
    parser.add_argument("--bundle", type=Path, required=True, help="its int8 bundle (names the float layers)")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    floats = json.loads((args.bundle / "manifest.json").read_text())["model"]["quantization"]["float_layers"]
    work = Path(tempfile.mkdtemp())
    fp32 = export_bundle(args.run, work / "fp32", parity_runtimes=["onnxruntime"], overwrite=True)
    side = json.loads((fp32 / "manifest.json").read_text())["preprocessing"]["input_size"]
    rng = np.random.default_rng(0)
    (work / "q").mkdir()
    graph = Int8Graph(fp32 / "model.onnx", [rng.normal(size=(8, 3, side, side)).astype(np.float32)], work / "q")
    graph.write(work / "all.onnx", [])
    graph.write(work / "ladder.onnx", floats)
    one, many = (rng.normal(size=(b, 3, side, side)).astype(np.float32) for b in (1, 16))
    print(f"float layers of {args.bundle}: {floats}")
    graphs = [("fp32", fp32 / "model.onnx", "fp32"), ("all-int8", work / "all.onnx", "int8")]
    for name, path, precision in [*graphs, ("shipped", work / "ladder.onnx", "int8")]:
        for backend_class in (OnnxRuntimeBackend, OpenVINOBackend):
            backend = backend_class(path, precision=precision)
            print(
                f"{name:9s} {backend_class.runtime:12s} batch 1 {median_ms(backend, one, args.repeats):6.2f} ms   "
                f"batch 16 {median_ms(backend, many, args.repeats // 5):7.2f} ms"
            )


if __name__ == "__main__":
    main()
