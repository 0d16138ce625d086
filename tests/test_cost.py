"""The cost model: the brief's table from the defaults, the scenarios, sources, overrides and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.cost import CostInputs, cost_model, read_al_saving, read_cpu_bench, write_cost_report
from dermascan.errors import ConfigError

#: The brief's section 4.8, line by line.
BRIEF_LINES = [48_000, 3_200, 115, 500, 85_000]


def test_defaults_reproduce_the_brief_table() -> None:
    model = cost_model()
    base = model["baseline"]
    assert [line["monthly"] for line in base["lines"]] == pytest.approx(BRIEF_LINES)
    assert base["total"] == pytest.approx(136_815)
    assert base["revenue"] == pytest.approx(500_000 * 4.50) == pytest.approx(2_250_000)
    assert base["cost_per_scan"] == pytest.approx(136_815 / 500_000)
    assert base["margin"] == pytest.approx(2_250_000 - 136_815)
    assert {line["source"] for line in base["lines"]} == {"brief"}
    assert all(v["source"] in ("brief", "assumption") for v in model["inputs"].values())


def test_active_learning_scenario_assumed_then_measured(tmp_path: Path) -> None:
    assumed = next(s for s in cost_model()["scenarios"] if s["name"] == "Active learning")
    assert assumed["source"] == "assumption"
    assert assumed["lines"][-1]["monthly"] == pytest.approx(85_000 * 0.5)
    # A simulation's headline: the best strategy saved 30% of acquired labels, interval [10%, 45%].
    sim = tmp_path / "sim"
    sim.mkdir()
    headline = {
        "strategy": "kcenter",
        "metric": "auroc",
        "reached": True,
        "saving_fraction": {"value": 0.3, "lo": 0.1, "hi": 0.45, "bootstrap": True},
    }
    (sim / "simulation.json").write_text(json.dumps({"headline": headline}))
    measured = next(s for s in cost_model(al_simulation=sim)["scenarios"] if s["name"] == "Active learning")
    assert measured["source"] == "measured" and measured["lines"][-1]["source"] == "measured"
    assert measured["lines"][-1]["monthly"] == pytest.approx(85_000 * 0.7)
    assert measured["saving_vs_baseline"] == pytest.approx(85_000 * 0.3)
    assert "kcenter" in measured["basis"] and "[10%, 45%]" in measured["basis"]
    # A strategy that never matched random saves nothing (it would not be used).
    headline.update(reached=False, saving_fraction={"value": None, "lo": None, "hi": None, "bootstrap": True})
    (sim / "simulation.json").write_text(json.dumps({"headline": headline}))
    none = next(s for s in cost_model(al_simulation=sim)["scenarios"] if s["name"] == "Active learning")
    assert none["share_saved"] == 0.0 and "no saving" in none["basis"]


def _bench(path: Path, p50: float, p95: float, throughput: dict[str, float]) -> Path:
    report = {
        "bundle": {"architecture": "resnet50", "input_size": 224, "precision": "fp32"},
        "machine": {"processor": "x86_64"},
        "results": [
            {
                "spec": "torch",
                "device": "cpu",
                "latency_ms": {"total": {"p50": p50 * 2, "p95": p95 * 2}},
                "throughput_img_s": {"8": 1.0},
            },
            {
                "spec": "onnxruntime",
                "device": "CPUExecutionProvider",  # as ONNX Runtime reports it
                "latency_ms": {"total": {"p50": p50, "p95": p95}},
                "throughput_img_s": throughput,
            },
            {"spec": "openvino", "error": "not installed"},
        ],
    }
    path.write_text(json.dumps(report))
    return path


def test_cpu_clinics_use_the_measured_latency(tmp_path: Path) -> None:
    without = next(s for s in cost_model()["scenarios"] if s["name"].startswith("CPU"))
    assert without["total"] is None and "--bench" in without["basis"]
    bench = _bench(tmp_path / "bench.json", p50=120.0, p95=180.0, throughput={"8": 9.0, "16": 11.0})
    assert read_cpu_bench(bench)["runtime"] == "onnxruntime" and read_cpu_bench(bench)["images_per_s"] == 11.0
    cpu = next(s for s in cost_model(bench=bench)["scenarios"] if s["name"].startswith("CPU"))
    # 2,500 scans per clinic a month over 30 days x 10 h, 4x at the peak: 0.0093 images/s; one box serves 11.
    assert cpu["peak_images_per_s"] == pytest.approx(2500 / (30 * 10 * 3600) * 4)
    assert cpu["boxes_per_clinic"] == 1 and cpu["fits_latency"]
    assert cpu["lines"][0]["monthly"] == pytest.approx(200 * 60) and cpu["lines"][0]["source"] == "assumption"
    assert cpu["total"] == pytest.approx(136_815 - 48_000 + 200 * 60)
    slow = _bench(tmp_path / "slow.json", p50=2500.0, p95=4000.0, throughput={"8": 0.004})
    cpu = next(s for s in cost_model(bench=slow)["scenarios"] if s["name"].startswith("CPU"))
    assert cpu["boxes_per_clinic"] == 3 and not cpu["fits_latency"] and "does NOT fit" in cpu["basis"]


def test_more_clinics_scale_edge_and_storage_only() -> None:
    grown = next(s for s in cost_model()["scenarios"] if s["name"] == "3x clinics")
    monthly = [line["monthly"] for line in grown["lines"]]
    assert monthly == pytest.approx([144_000, 3_200, 345, 500, 85_000])
    assert grown["revenue"] == pytest.approx(3 * 2_250_000)


def test_config_overrides_become_assumptions(tmp_path: Path) -> None:
    config = tmp_path / "costs.yaml"
    config.write_text("label_cost: 100\nclinics: 250\n")
    model = cost_model(CostInputs.from_yaml(config))
    assert model["baseline"]["lines"][-1]["monthly"] == pytest.approx(100_000)
    assert model["baseline"]["lines"][0]["monthly"] == pytest.approx(250 * 240)
    assert model["inputs"]["label_cost"]["source"] == "assumption"
    assert model["baseline"]["lines"][0]["source"] == "assumption"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label_cots: 100\n", "unknown cost input"),
        ("clinics: -3\n", "non-negative number"),
        ("clinics: many\n", "non-negative number"),
        ("- 1\n", "expected a mapping"),
    ],
)
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "costs.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        CostInputs.from_yaml(config)


def test_bad_simulation_and_bench_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    with pytest.raises(ConfigError, match="active-learn simulate"):
        read_al_saving(junk)
    with pytest.raises(ConfigError, match="dermascan bench"):
        read_cpu_bench(junk)
    junk.write_text(json.dumps({"results": [{"spec": "torch", "error": "boom"}]}))
    with pytest.raises(ConfigError, match="no runtime was measured on the CPU"):
        read_cpu_bench(junk)


def test_reports_and_cli(tmp_path: Path) -> None:
    write_cost_report(tmp_path / "a")
    markdown = (tmp_path / "a" / "cost.md").read_text()
    assert "| **Total** | **$136,815** |" in markdown and "$0.2736" in markdown
    assert "$136,815" in (tmp_path / "a" / "cost.html").read_text()
    assert json.loads((tmp_path / "a" / "cost.json").read_text())["baseline"]["total"] == 136_815
    result = CliRunner().invoke(app, ["cost", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "monthly cost 136,815 $" in result.output
    bad = CliRunner().invoke(app, ["cost", "--out", str(tmp_path / "c"), "--bench", str(tmp_path / "none.json")])
    assert bad.exit_code == 2 and "dermascan bench" in bad.output
