"""How fast DermaScan gives up on ImageNet weights when there is no network, in seconds.

The tests assert what happens offline (the clear error, no download attempted, the probe's timeout);
how long it takes is a figure of the machine and its network, so it is printed here instead:

* the TCP probe on an unroutable address (TEST-NET-1), with a 0.5 s and the default timeout;
* ``create_model(..., weights="imagenet")`` with an empty hub cache, for torchvision and timm models;
* ``dermascan train --weights imagenet`` through the command line, to its exit with the fix.

Usage: python benchmarks/bench_offline.py

Not a test: it prints figures. Where the network does reach download.pytorch.org, the model rows
measure a real download instead (the script says so).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object]) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        result = fn()
        outcome = f"returned {result!r}" if not hasattr(result, "parameters") else "loaded (network reachable)"
    except Exception as e:  # the outcome is part of the figure
        outcome = f"{type(e).__name__}"
    return time.perf_counter() - start, outcome


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCH_HOME"] = str(Path(tmp) / "torch")  # an empty hub cache: nothing to fall back on
        os.environ["HF_HOME"] = str(Path(tmp) / "hf")
        from typer.testing import CliRunner

        from dermascan.cli import app
        from dermascan.data.synthetic import SynthConfig, generate_dataset
        from dermascan.models import create_model
        from dermascan.models.weights import PROBE_TIMEOUT_S, host_reachable

        data = Path(tmp) / "data"
        generate_dataset(data, SynthConfig(n=40, size=32, seed=0, workers=1), progress=False)
        cases: list[tuple[str, Callable[[], object]]] = [
            ("probe 192.0.2.1, timeout 0.5 s", lambda: host_reachable("192.0.2.1", timeout=0.5)),
            (f"probe 192.0.2.1, timeout {PROBE_TIMEOUT_S:g} s", lambda: host_reachable("192.0.2.1")),
            ("probe download.pytorch.org", lambda: host_reachable("download.pytorch.org")),
            ("create_model resnet50 imagenet", lambda: create_model("resnet50", weights="imagenet")),
            ("create_model timm:resnet18 imagenet", lambda: create_model("timm:resnet18", weights="imagenet")),
            (
                "dermascan train --weights imagenet",
                lambda: (
                    CliRunner()
                    .invoke(
                        app,
                        [
                            "train",
                            "--preset",
                            "cpu-demo",
                            "--data",
                            str(data),
                            "--out",
                            str(Path(tmp) / "run"),
                            "--weights",
                            "imagenet",
                            "--image-size",
                            "32",
                        ],
                    )
                    .exit_code
                ),
            ),
        ]
        print(f"{'case':<42} {'seconds':>8}  outcome")
        for name, fn in cases:
            seconds, outcome = timed(fn)
            print(f"{name:<42} {seconds:>8.2f}  {outcome}")


if __name__ == "__main__":
    main()
