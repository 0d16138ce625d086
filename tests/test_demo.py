"""The demo pipeline end to end, at toy size (the real one is `make demo`)."""

from __future__ import annotations

import json
from pathlib import Path

from dermascan.demo import DemoConfig, run_demo


def test_demo_writes_summary_and_index(tmp_path: Path) -> None:
    cfg = DemoConfig(
        n_images=220,
        size=48,
        image_size=32,
        epochs=1,
        lower_ci=False,
        monitor_days=4,
        monitor_per_day=60,
        variants=("cnn_ce", "cnn_focal_sqrt"),
        extra={"batch_size": 32, "precision": "32-true"},
    )
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", cfg, echo=lines.append)
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["models"] == summary["models"]
    assert [(m["name"], m["decision"]) for m in saved["models"]] == [
        ("cnn_ce", "argmax"),
        ("cnn_ce", "threshold"),
        ("cnn_focal_sqrt", "argmax"),
        ("cnn_focal_sqrt", "threshold"),
    ]
    for m in saved["models"]:
        assert m["loss"] in ("ce", "weighted_ce_focal") and m["decision"] in ("argmax", "threshold")
        for key in ("sensitivity", "specificity", "auroc", "balanced_accuracy"):
            assert key in m and len(m[key + "_ci"]) == 2
    assert saved["models"][0]["weighting"] == "uniform" and saved["models"][2]["weighting"] == "sqrt_inverse"
    page = (tmp_path / "demo" / "index.html").read_text()
    assert "eval/cnn_ce/report.html" in page and "eda/eda.html" in page
    assert any("decision" in line for line in lines)  # the comparison table is printed
    # The production candidate is the variant with the best validation specificity at its locked threshold
    # (chosen on validation only; the test figures never enter), and the audits are of that variant.
    val_spec = {
        name: json.loads((tmp_path / "demo" / "eval" / name / "metrics.json").read_text())["operating_point"][
            "validation"
        ]["specificity"]["value"]
        for name in cfg.variants
    }
    assert saved["winner"] == max(cfg.variants, key=lambda name: val_spec[name] or 0.0)
    manifest = json.loads((tmp_path / "demo" / "bundle" / "manifest.json").read_text())
    assert manifest["version"].startswith(f"{saved['winner']}-")  # the deployed bundle is the winner's run
    sanity = json.loads((tmp_path / "demo" / "heatmaps" / "sanity.json").read_text())
    report = sanity["cnn_focal_sqrt"]["gradcam"]
    assert report["n_images"] > 0 and {"energy_in_mask", "uniform_share", "randomization_spearman"} <= set(report)
    assert (tmp_path / "demo" / "heatmaps" / "cnn_focal_sqrt.png").exists()
    for path in ("errors/errors.html", "errors/gallery.png", "fairness/fairness.json", "fairness/fairness.html"):
        assert (tmp_path / "demo" / path).exists(), path
    dep = saved["deployment"]
    assert {r["bundle"] for r in dep["parity"]} >= {"bundle"} and all(r["n_images"] > 0 for r in dep["parity"])
    # The int8 bundle is either written (and passed the gate) or its refusal is reported, never a crash.
    int8 = [r for r in dep["parity"] if r["bundle"].startswith(("bundle-int8", "int8"))]
    assert int8 and all(r["compute_precision"] == "int8" for r in int8)
    if dep["int8"].endswith("bundle-int8"):
        assert all(r["passed"] for r in int8)
    else:
        assert dep["int8"].startswith("int8 export refused") and not all(r["passed"] for r in int8)
    bench = (tmp_path / "demo" / "bench.txt").read_text()
    assert "eager-pipeline" in bench and "openvino" in bench and "Parity with the eager model" in page
    service = dep["service"]  # the service was started on the bundle and answered the brief's request
    assert service["request"]["clinic_id"] == "demo-clinic" and set(service["request"]) == {
        "image",
        "clinic_id",
        "patient_id",
    }
    assert service["response"]["prediction_id"] and service["response"]["diagnosis"]["primary"]
    assert "The clinical service (brief section 4.2)" in page
    # the operator's half: monitoring on simulated traffic, the gates and the registry, a shadow A/B decision,
    # the labelling ranking and the cost table, each linked from the page
    ops = saved["operations"]
    for scenario in ("steady", "new-device"):
        assert (tmp_path / "demo" / "monitoring" / scenario / "monitor.html").exists()
        assert f"monitoring/{scenario}/monitor.html" in page
    assert "melanoma sensitivity" in ops["lifecycle"]["gate_table"] and ops["lifecycle"]["registered"]["version"]
    assert ops["lifecycle"]["abtest"]["verdict"] in ("promote", "keep champion", "continue")
    assert ops["labelling"]["top"] and ops["labelling"]["cost_total"] == 136_815
    assert "Promotion gates" in page and "active-learning/cost/cost.html" in page
