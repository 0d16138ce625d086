"""The promotion gates: each gate fails on its own, through the CLI, with the figures in the table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.evaluation.report import melanoma_report
from dermascan.lifecycle.gates import GateConfig, GateInputError, check_gates

runner = CliRunner()


def _metrics(n_mel: int, mel_hits: int, n_other: int, other_right: int) -> dict[str, Any]:
    """A real ``melanoma_report`` (as in metrics.json) on constructed labels: ``mel_hits`` of ``n_mel`` melanomas
    called melanoma, ``other_right`` of ``n_other`` nevi called nevus (the rest called melanoma)."""
    y = np.array([0] * n_mel + [1] * n_other)
    pred = np.array([0] * mel_hits + [1] * (n_mel - mel_hits) + [1] * other_right + [0] * (n_other - other_right))
    probs = np.full((len(y), 7), 0.01)
    probs[np.arange(len(y)), pred] = 0.94
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a split without melanoma has undefined figures, on purpose
        return {**melanoma_report(y, probs, threshold=0.5, n_boot=20), "split": "test"}


def _bench(p95: float, spec: str = "onnxruntime") -> dict[str, Any]:
    return {
        "bundle": {"version": "v1"},
        "machine": {"cpu": "test cpu"},
        "results": [
            {"spec": "eager-pipeline", "latency_ms": {"total": {"p95": 1.0}}},  # a reference: never the gate's
            {"spec": spec, "latency_ms": {"total": {"p95": p95}}},
            {"spec": "openvino", "error": "not installed"},
        ],
    }


GOOD = {"n_mel": 100, "mel_hits": 95, "n_other": 400, "other_right": 380}


def test_a_good_model_passes_every_gate() -> None:
    report = check_gates(_metrics(**GOOD), _bench(900.0))
    assert report.passed, report.table()
    assert [r.name for r in report.results] == ["melanoma sensitivity", "accuracy", "latency p95"]
    sens, acc, lat = (r.figure for r in report.results)
    assert sens == pytest.approx(0.95) and acc == pytest.approx((95 + 380) / 500) and lat == 900.0
    assert "all gates pass" in report.table()


@pytest.mark.parametrize(
    ("metrics", "p95", "failing"),
    [
        ({**GOOD, "mel_hits": 90}, 900.0, "melanoma sensitivity"),  # 0.90 is not > 0.90
        ({**GOOD, "other_right": 330}, 900.0, "accuracy"),  # (95 + 330) / 500 = 0.85, under a bar of 0.86
        (GOOD, 2500.0, "latency p95"),  # 2500 ms is not < 2500 ms
    ],
)
def test_each_gate_fails_alone(metrics: dict[str, int], p95: float, failing: str) -> None:
    m = _metrics(**metrics)
    config = GateConfig(accuracy_min=0.86) if failing == "accuracy" else GateConfig()
    report = check_gates(m, _bench(p95), config)
    assert report.failed == [failing], report.table()


def test_the_lower_bound_option_is_stricter() -> None:
    m = _metrics(n_mel=40, mel_hits=38, n_other=200, other_right=190)  # 0.95, Wilson lower bound ~0.83
    assert check_gates(m, _bench(10.0)).passed
    report = check_gates(m, _bench(10.0), GateConfig(sensitivity_bound="lower"))
    assert report.failed == ["melanoma sensitivity (lower 95% bound)"]
    assert report.results[0].figure == pytest.approx(m["melanoma"]["sensitivity"]["lo"])


def test_optional_gates_fail_without_their_evidence_and_on_bad_figures() -> None:
    config = GateConfig(specificity_min=0.97, skin_type_gap_max_points=5.0, parity_min_agreement=0.99)
    report = check_gates(_metrics(**GOOD), _bench(10.0), config)
    assert report.failed == ["melanoma specificity", "skin-type sensitivity gap", "export parity (worst agreement)"]
    fairness = {"attributes": {"fitzpatrick": {"max_gap_points": 12.0, "best_group": "II", "flagged": ["VI"]}}}
    manifest = {"parity": [{"runtime": "onnxruntime", "primary_agreement": 1.0, "flag_agreement": 0.98}]}
    report = check_gates(_metrics(**GOOD), _bench(10.0), config, fairness, manifest)
    figures = {r.name: r.figure for r in report.results}
    assert figures["skin-type sensitivity gap"] == 12.0 and figures["export parity (worst agreement)"] == 0.98
    assert len(report.failed) == 3
    ok = GateConfig(specificity_min=0.9, skin_type_gap_max_points=15.0, parity_min_agreement=0.98)
    assert check_gates(_metrics(**GOOD), _bench(10.0), ok, fairness, manifest).passed


def test_no_melanoma_and_no_runtime_are_failures_not_passes() -> None:
    m = _metrics(n_mel=0, mel_hits=0, n_other=100, other_right=100)
    bench = {"results": [{"spec": "torch", "error": "boom"}]}
    report = check_gates(m, bench)
    assert set(report.failed) == {"melanoma sensitivity", "latency p95"}
    assert "missing" in report.table()


def test_wrong_inputs_are_refused() -> None:
    with pytest.raises(GateInputError, match="metrics.json"):
        check_gates({"n": 3}, _bench(1.0))
    with pytest.raises(GateInputError, match="bench"):
        check_gates(_metrics(**GOOD), {"nothing": 1})
    with pytest.raises(GateInputError, match="'val' split"):
        check_gates({**_metrics(**GOOD), "split": "val"}, _bench(1.0))


def test_the_cli_prints_the_table_and_exits_non_zero_on_a_failure(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(_metrics(**GOOD)))
    (tmp_path / "bench.json").write_text(json.dumps(_bench(3000.0)))
    args = ["gate", "--eval", str(tmp_path / "eval"), "--bench", str(tmp_path / "bench.json")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "gate.json")])
    assert result.exit_code == 1, result.output
    assert "latency p95" in result.output and "FAIL" in result.output and "3000" in result.output
    assert json.loads((tmp_path / "gate.json").read_text())["failed"] == ["latency p95"]
    (tmp_path / "gates.yaml").write_text("latency_p95_max_ms: 5000\n")
    assert runner.invoke(app, [*args, "--gates", str(tmp_path / "gates.yaml")]).exit_code == 0
    (tmp_path / "bad.yaml").write_text("latency_max: 5000\n")
    bad = runner.invoke(app, [*args, "--gates", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "unknown gate setting" in bad.output
    missing = runner.invoke(app, ["gate", "--eval", str(tmp_path / "nope"), "--bench", str(tmp_path / "bench.json")])
    assert missing.exit_code == 2 and "dermascan evaluate" in missing.output
