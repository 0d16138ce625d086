"""``benchmarks/gpu_check.sh``, the GPU check, end to end in its CPU smoke mode: the report's structure, the table,
and the GPU rows that cannot run here giving their reason instead of failing the run (never timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_LABELS = [
    "torch fp16, eager CUDA",
    "onnxruntime CUDA EP",
    "onnxruntime CUDA EP, no IO binding",
    "onnxruntime TensorRT EP",
]
CPU_LABELS = ["torch fp32, eager CPU", "onnxruntime CPU EP"]


def test_cpu_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "GPU_CHECK_LIMIT_S": "240"}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick", "--workdir", str(tmp_path)],
        cwd=tmp_path,  # the script finds the repository itself
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== nvidia-smi" in done.stdout and "== done" in done.stdout
    assert (out / "gpu.txt").read_text() in done.stdout  # the log is what was printed

    report = json.loads((out / "gpu.json").read_text())
    env_info = report["environment"]
    assert {"torch", "onnxruntime", "tensorrt"} <= set(env_info["versions"]) and env_info["gpus"]
    assert report["settings"]["batches"] == [1, 2] and report["settings"]["archs"] == ["resnet18"]
    assert report["bundles"]["resnet18"]["precision"] == "fp32" and "path" in report["bundles"]["resnet18"]

    rows = {r["label"]: r for r in report["rows"]}
    assert list(rows) == GPU_LABELS + CPU_LABELS
    for label in GPU_LABELS:  # no GPU in CI: each says why, none crashed the run
        if rows[label]["status"] != "ok":
            assert rows[label]["status"] == "unavailable" and rows[label]["reason"], rows[label]
    providers = env_info["onnxruntime"]["providers"]
    if "TensorrtExecutionProvider" not in providers:
        assert "TensorrtExecutionProvider" in rows["onnxruntime TensorRT EP"]["reason"]
    if "CUDAExecutionProvider" not in providers:
        assert "CUDAExecutionProvider" in rows["onnxruntime CUDA EP"]["reason"]
        assert "CUDAExecutionProvider" in rows["onnxruntime CUDA EP, no IO binding"]["reason"]

    reference = rows["torch fp32, eager CPU"] if rows[GPU_LABELS[0]]["status"] != "ok" else rows[GPU_LABELS[0]]
    for label in CPU_LABELS:
        row = rows[label]
        assert row["status"] == "ok", row
        assert row["reference"] == reference["label"] and row["backend"]["runtime"] == row["runtime"]
        assert row["maps_shape"][0] == 2  # the heat-map output came back with the batch
        for b in ("1", "2"):
            stats = row["batches"][b]
            assert stats["repeats"] == 3 and stats["images_per_s"] > 0
            assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    agree = rows["onnxruntime CPU EP"]["vs_reference"]["2"]
    assert agree["argmax_agreement"] == 1.0 and agree["max_abs_logit_diff"] < 1e-3  # fp32 against fp32

    table = done.stdout[done.stdout.index("| model |") :]
    assert "| resnet18 | onnxruntime TensorRT EP | unavailable: " in table
    assert "| resnet18 | onnxruntime CPU EP | CPUExecutionProvider | fp32 | False | 2 |" in table
    assert f"{sum(r['status'] == 'ok' for r in rows.values())}/{len(rows)} rows ran" in done.stdout
