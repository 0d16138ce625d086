"""``dermascan bench``: report structure, the eager reference, per-runtime processes (behaviour, never timings)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from dermascan.export.benchmark import format_table, run_benchmark, runnable_specs
from dermascan.export.measure import PLAIN_EAGER, parse_spec, percentiles
from dermascan.testing import random_bundle, synthetic_jpeg


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One random-weight resnet18 bundle shared by the test modules of a session (exported once).
    return random_bundle(tmp_path_factory.getbasetemp() / "shared-resnet18-64", "resnet18", 64, reuse=True)


def test_isolated_runs_side_by_side_with_the_eager_reference(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    report = run_benchmark(
        bundle,
        runtimes=["onnxruntime", "torchscript"],
        out_json=out,
        repeats=3,
        warmup=1,
        batch_sizes=(2,),
        throughput_repeats=1,
        threads=1,
    )
    assert json.loads(out.read_text())["results"] == json.loads(json.dumps(report["results"]))
    by_spec = {r["spec"]: r for r in report["results"]}
    assert list(by_spec) == [PLAIN_EAGER, "torch", "onnxruntime"]  # the references are added first
    assert report["skipped"] == {"torchscript": "needs a torchscript bundle, this one is onnx"}
    for r in by_spec.values():
        assert "error" not in r, r
        assert set(r["latency_ms"]) == {"decode", "preprocess", "inference", "heatmap", "total"}
        assert {"p50", "p95", "p99"} <= set(r["latency_ms"]["total"]) and r["heatmap"]
        assert r["throughput_img_s"]["2"] > 0 and r["peak_rss_mib"] > 0
    assert by_spec["torch"]["speedup_p50"] == pytest.approx(1.0)
    assert by_spec[PLAIN_EAGER]["speedup_vs_pipeline_p50"] == pytest.approx(1.0)
    assert by_spec[PLAIN_EAGER]["runtime"] == PLAIN_EAGER and by_spec[PLAIN_EAGER]["torch_imported"]
    assert by_spec["onnxruntime"]["speedup_vs_pipeline_p50"] > 0
    assert by_spec["torch"]["torch_imported"] and not by_spec["onnxruntime"]["torch_imported"]  # own processes
    assert report["image"]["size"] == [1024, 768] and report["reference"] == "torch"
    table = format_table(report)
    assert "onnxruntime" in table and "torchscript" in table and "x eager" in table and "x plain" in table


def test_in_process_run(bundle: Path) -> None:
    image = synthetic_jpeg(320, 240)
    report = run_benchmark(
        bundle, runtimes=["openvino:bf16"], image=image, repeats=2, warmup=1, batch_sizes=(), isolate=False
    )
    specs = [r["spec"] for r in report["results"]] + list(report["skipped"])
    assert specs[:2] == [PLAIN_EAGER, "torch"] and "openvino:bf16" in specs
    assert report["image"]["size"] == [320, 240] and report["settings"]["isolate"] is False


def test_rounds_pool_samples_and_keep_each_rounds_speedup(bundle: Path) -> None:
    image = synthetic_jpeg(320, 240)
    report = run_benchmark(
        bundle,
        runtimes=["onnxruntime"],
        image=image,
        repeats=2,
        warmup=1,
        batch_sizes=(2,),
        throughput_repeats=1,
        isolate=False,
        rounds=2,
        threads=1,
    )
    by_spec = {r["spec"]: r for r in report["results"]}
    assert list(by_spec) == [PLAIN_EAGER, "torch", "onnxruntime"] and report["settings"]["rounds"] == 2
    for r in by_spec.values():
        assert r["repeats"] == 4 and r["rounds"] == 2
        assert all(len(v) == 4 for v in r["samples_ms"].values())
    ort = by_spec["onnxruntime"]
    assert len(ort["speedup_p50_rounds"]) == 2 and all(x > 0 for x in ort["speedup_p50_rounds"])
    assert ort["latency_ms"]["total"] == percentiles(ort["samples_ms"]["total"])
    assert "2 rounds" in format_table(report)
    with pytest.raises(ValueError, match="rounds"):
        run_benchmark(bundle, runtimes=["onnxruntime"], rounds=0)


def test_specs_and_statistics(bundle: Path) -> None:
    assert parse_spec("openvino:bf16") == ("openvino", "bf16") and parse_spec("torch") == ("torch", None)
    with pytest.raises(ValueError, match="runtime spec"):
        parse_spec("tensorrt:int8")
    ok, skipped = runnable_specs(bundle, ["torch", "torchscript", "onnxruntime"])
    assert "torch" in ok and "torchscript" in skipped
    p = percentiles([float(v) for v in range(1, 101)])
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01) and p["min"] == 1.0
    with Image.open(io.BytesIO(synthetic_jpeg())) as im:
        assert im.size == (1024, 768) and im.format == "JPEG"
