"""`dermascan demo`: the main job, end to end, on the built-in synthetic data set.

synthetic data -> EDA -> four trainings -> evaluation at argmax and at a validation-locked threshold ->
comparison table, ``summary.json`` and one HTML page (``index.html``) that links everything.

The four trainings answer the brief's two questions with three levers separated:
``cnn_ce`` (plain cross-entropy: the brief's baseline), ``cnn_focal_inverse`` (weighted CE with the brief's
inverse-frequency weights + melanoma focal loss), ``cnn_focal_sqrt`` (the same with gentler square-root
weights) and ``vit_focal_sqrt`` (the small ViT with the gentler loss). Each is read at argmax and at the
threshold locked on validation, so loss, weighting, decision rule and architecture can each be judged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermascan import _html, _io


@dataclass
class DemoConfig:
    """Sizes of the demo. The defaults finish in about 12-15 minutes on 2 CPU cores.

    Attributes:
        n_images: synthetic images in all (train + val + test).
        size: synthetic image side in pixels (the models see ``image_size``).
        image_size: network input side.
        val_fraction: share held out for validation (several hundred melanomas, so the locked threshold
            is estimated well).
        test_fraction: share held out for testing (several hundred melanomas, for tight intervals).
        epochs: training epochs per model.
        seed: seeds data, splits and training.
        target_sensitivity: melanoma sensitivity the threshold is chosen for on validation.
        lower_ci: require the lower 95% Wilson bound on validation, not the point estimate, to reach the target.
        variants: which trainings to run (names of :data:`VARIANTS`).
        audit: after the comparison, also draw heat maps, analyse errors, audit fairness, and export,
            run and benchmark the winner's bundle.
    """

    n_images: int = 8000
    size: int = 96
    image_size: int = 64
    val_fraction: float = 0.3
    test_fraction: float = 0.3
    epochs: int = 8
    seed: int = 0
    target_sensitivity: float = 0.90
    lower_ci: bool = True
    variants: tuple[str, ...] = ("cnn_ce", "cnn_focal_inverse", "cnn_focal_sqrt", "vit_focal_sqrt")
    audit: bool = True
    monitor_days: int = 14
    monitor_per_day: int = 150
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or not self.variants:
            raise ValueError(f"unknown variant(s) {unknown or '(none given)'}; choose from {sorted(VARIANTS)}")
        if self.epochs < 1 or self.n_images < 1:
            raise ValueError(f"epochs and n_images must be >= 1, got {self.epochs} and {self.n_images}")


#: ``--quick``: a one-minute smoke run with meaningless figures. Flags given beside it still win.
QUICK: dict[str, Any] = {
    "n_images": 300,
    "size": 48,
    "image_size": 32,
    "epochs": 1,
    "lower_ci": False,
    "monitor_days": 6,
    "monitor_per_day": 60,
    "extra": {"batch_size": 32},
}


def demo_config(quick: bool = False, **given: Any) -> DemoConfig:
    """The demo's sizes: the defaults, or :data:`QUICK` with ``quick``; every ``given`` value that is not None wins.

    Raises:
        ValueError: an unknown variant or a bad size (the message names it).
    """
    base = {**QUICK, "extra": dict(QUICK["extra"])} if quick else {}
    settings = {**base, **{k: v for k, v in given.items() if v is not None}}
    return DemoConfig(**settings)


#: name -> training overrides on top of the cpu-demo preset.
VARIANTS: dict[str, dict[str, Any]] = {
    "cnn_ce": {"arch": "resnet18", "loss": "ce", "class_weighting": "uniform"},
    "cnn_focal_inverse": {"arch": "resnet18", "loss": "weighted_ce_focal", "class_weighting": "inverse"},
    "cnn_focal_sqrt": {"arch": "resnet18", "loss": "weighted_ce_focal", "class_weighting": "sqrt_inverse"},
    "vit_focal_sqrt": {"arch": "vit_tiny", "loss": "weighted_ce_focal", "class_weighting": "sqrt_inverse", "lr": 0.002},
}


class Steps:
    """Runs named steps, prints progress and keeps their timings."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.echo(f"==> {name}")
        start = time.perf_counter()
        result = fn()
        self.timings[name] = round(time.perf_counter() - start, 1)
        self.echo(f"    done in {self.timings[name]:.0f} s")
        return result


def run_demo(out_dir: str | Path, cfg: DemoConfig | None = None, echo: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out_dir``; returns the summary (also written to ``summary.json``)."""
    from dermascan.data.eda import run_eda
    from dermascan.data.readers import read_dataset
    from dermascan.data.synthetic import SynthConfig, generate_dataset
    from dermascan.evaluation.compare import compare, format_table
    from dermascan.evaluation.evaluate import evaluate
    from dermascan.training.config import resolve_config
    from dermascan.training.train import train

    cfg = cfg or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(echo)
    start = time.perf_counter()
    data = out / "data"
    if not (data / "metadata.csv").exists():
        steps.run(
            "synthetic data",
            lambda: generate_dataset(data, SynthConfig(n=cfg.n_images, size=cfg.size, seed=cfg.seed), progress=True),
        )
    index = steps.run("read data", lambda: read_dataset(data, progress=False))
    steps.run("EDA", lambda: run_eda(index, out / "eda"))

    evals: dict[str, Path] = {}
    for name in cfg.variants:
        run_dir, eval_dir = out / "runs" / name, out / "eval" / name
        if not (run_dir / "last.ckpt").exists():
            config = resolve_config(
                "cpu-demo",
                data=str(data),
                out=str(run_dir),
                image_size=cfg.image_size,
                epochs=cfg.epochs,
                seed=cfg.seed,
                val_fraction=cfg.val_fraction,
                test_fraction=cfg.test_fraction,
                **VARIANTS[name],
                **cfg.extra,
            )
            steps.run(f"train {name}", lambda c=config: train(c, index=index, progress=True))
        steps.run(
            f"evaluate {name}",
            lambda r=run_dir, e=eval_dir: evaluate(
                r,
                e,
                index=index,
                target_sensitivity=cfg.target_sensitivity,
                require_lower_ci=cfg.lower_ci,
                recalibrate=True,
                progress=False,
            ),
        )
        evals[name] = eval_dir

    table = compare(list(evals.values()), out)
    echo("\n" + format_table(table))
    summary = _summary(table, evals, cfg)
    winner = _pick_winner(evals)
    summary["winner"] = winner
    echo(f"\nproduction candidate (best validation specificity at the locked threshold): {winner}")
    if cfg.audit:
        _audit(out, winner, evals, index, steps, summary, cfg)
    summary["timings_s"] = steps.timings
    summary["total_s"] = round(time.perf_counter() - start, 1)
    _io.write_json(out / "summary.json", summary)
    _write_index(out, summary, evals)
    echo(f"\n{_verdict(summary)}\nwrote {out / 'index.html'} ({summary['total_s']:.0f} s)")
    return summary


def _audit(
    out: Path, winner: str, evals: dict[str, Path], index: Any, steps: Steps, summary: dict, cfg: DemoConfig
) -> None:
    """Heat maps, error analysis and fairness audit of the winner, then its bundle: export, predict, benchmark."""
    from dermascan.evaluation.evaluate import audit_errors, audit_fairness

    summary["heatmaps"] = steps.run("heat maps", lambda: _heatmaps(out, evals, index))
    steps.run(
        "error analysis",
        lambda: audit_errors(
            out / "runs" / winner,
            out / "errors",
            index=index,
            heatmap_fn=_overlay_fn(out / "runs" / winner),
            progress=False,
        ),
    )
    steps.run(
        "fairness audit", lambda: audit_fairness(out / "runs" / winner, out / "fairness", index=index, progress=False)
    )
    summary["deployment"] = _deployment(out, winner, evals[winner], steps)
    summary["operations"] = _operations(out, winner, evals[winner], steps, cfg)


def _operations(out: Path, winner: str, eval_dir: Path, steps: Steps, cfg: DemoConfig) -> dict[str, Any]:
    """What the operator and the clinic's purse see: monitoring on simulated traffic (steady, a new dermoscope),
    the promotion gates and the registry, a shadow A/B decision, the labelling ranking and the cost table."""
    from dermascan.active_learning.demo import demo_step as labelling
    from dermascan.lifecycle.demo import demo_step as lifecycle
    from dermascan.monitoring.demo import demo_step as monitoring

    bundle, run_dir = out / "bundle", out / "runs" / winner
    change = max(2, cfg.monitor_days // 2 + 1)
    return {
        "monitoring": steps.run(
            "monitoring: steady and new-device traffic",
            lambda: monitoring(out / "monitoring", bundle, cfg.monitor_days, cfg.monitor_per_day, change),
        ),
        "lifecycle": steps.run(
            "gates, registry, shadow A/B",
            lambda: lifecycle(out, run_dir, eval_dir, bundle, out / "bench.json", out / "fairness"),
        ),
        "labelling": steps.run(
            "active learning ranking and the cost table",
            lambda: labelling(out / "active-learning", run_dir, bench=out / "bench.json"),
        ),
    }


def _deployment(out: Path, winner: str, eval_dir: Path, steps: Steps) -> dict[str, Any]:
    """Export the winner to an ONNX bundle (parity-checked), predict a few test images through it, benchmark it;
    also try an int8 bundle, which must pass the same parity gate on the trained model's validation images."""
    import pandas as pd

    from dermascan.export import ExportParityError, export_bundle
    from dermascan.export.benchmark import format_table, run_benchmark
    from dermascan.inference import Predictor

    bundle = steps.run(
        "export bundle",
        lambda: export_bundle(out / "runs" / winner, out / "bundle", overwrite=True, max_parity_images=400),
    )

    def export_int8() -> tuple[Path | str, list[dict[str, Any]]]:
        try:
            # All validation images: int8 flips a few decisions in a thousand, which 400 images can miss.
            path = export_bundle(out / "runs" / winner, out / "bundle-int8", precision="int8", overwrite=True)
            return path, json.loads((path / "manifest.json").read_text())["parity"]
        except ExportParityError as e:  # a finding, not a crash: the fp32 bundle is the one deployed
            return f"int8 export refused by the parity gate: {e}", [r.to_dict() for r in e.reports]

    int8, int8_parity = steps.run("export int8 bundle", export_int8)
    parity = [{"bundle": bundle.name, **r} for r in json.loads((bundle / "manifest.json").read_text())["parity"]]
    parity += [{"bundle": "bundle-int8" if isinstance(int8, Path) else "int8 (refused)", **r} for r in int8_parity]
    detail = pd.read_csv(eval_dir / "predictions_detail.csv")
    sample = pd.concat([detail[detail["dx"] == "MEL"].head(3), detail[detail["dx"] != "MEL"].head(3)])

    def predict() -> list[dict[str, Any]]:
        predictor = Predictor.from_path(bundle)
        results = [r.to_dict() for r in predictor.predict_paths(sample["path"], heatmap_dir=out / "predict")]
        for r, truth in zip(results, sample["dx"], strict=True):
            r["truth"] = truth
        _io.write_text(out / "predict" / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in results))
        return results

    predictions = steps.run("predict through the bundle", predict)
    service = steps.run("HTTP service: the brief's request", lambda: _service_call(out, bundle, sample["path"].iloc[0]))
    report = steps.run(
        "latency benchmark",
        lambda: run_benchmark(
            bundle,
            runtimes=["onnxruntime", "openvino", "openvino:bf16"],
            repeats=15,
            batch_sizes=(8,),
            out_json=out / "bench.json",
        ),
    )
    tables = [format_table(report)]
    if isinstance(int8, Path):
        report8 = steps.run(
            "latency benchmark, int8",
            lambda: run_benchmark(
                int8,
                runtimes=["onnxruntime", "openvino"],
                repeats=15,
                batch_sizes=(8,),
                out_json=out / "bench-int8.json",
            ),
        )
        tables.append(format_table(report8))
    _io.write_text(out / "bench.txt", "\n\n".join(tables) + "\n")
    return {
        "bundle": str(bundle),
        "int8": str(int8),
        "parity": parity,
        "predictions": predictions,
        "bench_table": "\n\n".join(tables),
        "service": service,
    }


def _service_call(out: Path, bundle: Path, image_path: str) -> dict[str, Any]:
    """Start `dermascan serve` on the bundle (loopback, a free port, a fresh SQLite store), send the brief's
    request for one test image, stop it. Returns the request and the answer (base64 fields shortened)."""
    import base64
    import urllib.request

    from dermascan.serving.server import BackgroundServer
    from dermascan.serving.settings import ServeSettings
    from dermascan.store import clinics, db

    folder = out / "service"
    (folder / "dermascan.db").unlink(missing_ok=True)
    settings = ServeSettings(bundle=bundle, data_dir=folder, dev=True)  # dev: a throwaway patient key
    engine = db.make_engine(settings.database_url())
    db.upgrade(engine)
    with db.transaction(db.session_factory(engine)) as session:
        clinic, key = clinics.add_clinic(session, "Demo Clinic")
    engine.dispose()
    request = {
        "image": base64.b64encode(Path(image_path).read_bytes()).decode(),
        "clinic_id": clinic.id,
        "patient_id": "demo-patient-1",
    }
    with BackgroundServer(settings) as server:
        req = urllib.request.Request(
            server.url + "/api/v1/analyze",
            data=json.dumps(request).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.load(r)
    _io.write_json(folder / "response.json", answer)

    def short(d: dict[str, Any], k: str) -> dict[str, Any]:
        return {**d, k: d[k][:40] + f"... ({len(d[k])} chars)"} if isinstance(d.get(k), str) else d

    return {
        "url": "POST /api/v1/analyze",
        "request": short(request, "image"),
        "response": short(answer, "attention_map"),
        "attention_map": answer.get("attention_map"),
        "attention_map_type": answer.get("attention_map_type"),
    }


def _pick_winner(evals: dict[str, Path]) -> str:
    """The variant to deploy, chosen on validation only: the best specificity at its locked threshold."""

    def val_spec(name: str) -> float:
        m = json.loads((evals[name] / "metrics.json").read_text())
        return m["operating_point"]["validation"]["specificity"]["value"] or 0.0

    return max(evals, key=val_spec)


def _overlay_fn(run_dir: Path) -> Callable[[str], Any]:
    from dermascan.explain.run import explain_image
    from dermascan.models import load_checkpoint

    loaded = load_checkpoint(run_dir / "best.ckpt")
    return lambda path: explain_image(loaded, path, "auto").overlay


def _heatmaps(out: Path, evals: dict[str, Path], index: Any, n_gallery: int = 6, n_sanity: int = 120) -> dict:
    """Heat-map galleries and sanity figures (energy in the lesion mask; model randomisation) per architecture."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from dermascan.explain.run import explain_image
    from dermascan.explain.sanity import prepare_pairs, sanity_report
    from dermascan.models import load_checkpoint

    folder = out / "heatmaps"
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in {m: None for m in ("cnn_focal_sqrt", "vit_focal_sqrt") if m in evals} or list(evals)[:1]:
        loaded = load_checkpoint(out / "runs" / name / "best.ckpt")
        detail = pd.read_csv(evals[name] / "predictions_detail.csv")
        with_masks = detail[detail["mask_path"].notna()] if "mask_path" in detail else detail.iloc[:0]
        mel = with_masks[with_masks["dx"] == "MEL"].head(n_gallery // 2)
        rest = with_masks[with_masks["dx"] != "MEL"].head(n_gallery - len(mel))
        tiles = []
        for row in pd.concat([mel, rest]).itertuples():
            image = Image.open(row.path).convert("RGB")
            ex = explain_image(loaded, image, "auto")
            tiles.append(np.concatenate([np.asarray(image), np.asarray(ex.overlay)], axis=1))
        if tiles:
            Image.fromarray(np.concatenate(tiles, axis=0)).save(folder / f"{name}.png")
        sample = with_masks.sample(min(n_sanity, len(with_masks)), random_state=0)
        if len(sample):
            images = [Image.open(p).convert("RGB") for p in sample["path"]]
            masks = [np.asarray(Image.open(p)) for p in sample["mask_path"]]
            x, m = prepare_pairs(images, masks, loaded.preprocessing)
            methods = ["gradcam"] if name.startswith("cnn") else ["attention", "rollout"]
            results[name] = {meth: sanity_report(loaded.model, x, m, meth) for meth in methods}
    _io.write_json(folder / "sanity.json", results)
    return results


def _summary(table: Any, evals: dict[str, Path], cfg: DemoConfig) -> dict[str, Any]:
    models = []
    for r in table.astype(object).where(table.notna(), None).to_dict(orient="records"):
        entry = {
            "name": r["model"],
            "arch": r["arch"],
            "loss": r["loss"],
            "weighting": r["weighting"],
            "decision": r["decision"],
            "threshold": r["threshold"],
        }
        for f in ("sensitivity", "specificity", "auroc", "balanced_accuracy", "specificity_at_90_sensitivity"):
            entry[f] = r[f]
            entry[f"{f}_ci"] = [r[f + "_lo"], r[f + "_hi"]]
        entry["meets_bar"] = bool((r["sensitivity"] or 0) >= 0.90 and (r["specificity"] or 0) >= 0.85)
        models.append(entry)
    metrics = {name: json.loads((d / "metrics.json").read_text()) for name, d in evals.items()}
    return {
        "config": {k: v for k, v in cfg.__dict__.items()},
        "models": models,
        "bar": {"sensitivity": 0.90, "specificity": 0.85},
        "test_melanomas": {name: m["melanoma"]["n_pos"] for name, m in metrics.items()},
        "validation_melanomas": {name: m["operating_point"]["validation"]["n_pos"] for name, m in metrics.items()},
    }


def _verdict(summary: dict[str, Any]) -> str:
    passing = [f"{m['name']} ({m['decision']})" for m in summary["models"] if m["meets_bar"]]
    if passing:
        return "Clinical bar (sensitivity >= 0.90, specificity >= 0.85) met by: " + ", ".join(passing)
    return "No variant meets the clinical bar (sensitivity >= 0.90 with specificity >= 0.85) on this run."


def _heatmap_html(out: Path, sanity: dict[str, Any]) -> str:
    h = _html
    rows = [
        (name, method, r["energy_in_mask"], r["uniform_share"], r["energy_ratio"], r["randomization_spearman"])
        for name, per in sanity.items()
        for method, r in per.items()
    ]
    gallery = "".join(
        f"<h3>{p.stem}</h3>" + h.image(p.relative_to(out), f"heat maps of {p.stem}")
        for p in sorted((out / "heatmaps").glob("*.png"))
    )
    return (
        h.paragraph(
            "Sanity checks on test images with lesion masks: the share of heat-map energy inside the "
            "lesion against a uniform map's share (the lesion's area fraction), and the rank "
            "correlation between the trained model's map and a randomly re-initialised model's "
            "(well below 1 means the map depends on what the model learned)."
        )
        + h.table(["model", "method", "energy in mask", "uniform share", "ratio", "Spearman vs random"], rows)
        + gallery
    )


def _deployment_html(out: Path, dep: dict[str, Any] | None) -> str:
    if not dep:
        return ""
    h = _html
    rows = [
        (
            Path(p["image"]).name,
            p.get("truth"),
            p.get("primary"),
            p.get("melanoma_risk"),
            p.get("melanoma_flag"),
            p.get("risk_band"),
        )
        for p in dep["predictions"]
    ]
    overlays = "".join(
        h.image(Path(p["heatmap"]).relative_to(out), Path(p["image"]).name)
        for p in dep["predictions"]
        if p.get("heatmap")
    )
    parity = [
        (
            r["bundle"],
            r["runtime"],
            r["compute_precision"],
            r["n_images"],
            f"{r['max_abs_prob_diff']:.1e}",
            f"{r['primary_agreement']:.1%}",
            f"{r['flag_agreement']:.1%}",
            "-" if r.get("p95_abs_map_diff") is None else f"{r['p95_abs_map_diff']:.3f}",
            "pass" if r["passed"] else "FAIL",
        )
        for r in dep.get("parity", [])
    ]
    int8_note = h.paragraph(dep["int8"]) if dep.get("int8", "").startswith("int8 export refused") else ""
    return (
        h.paragraph(
            f"The production candidate was exported to {Path(dep['bundle']).name}/ (ONNX, checksummed, "
            "parity-checked on validation images) and run on six test images through the Predictor."
        )
        + h.table(["image", "truth", "primary", "melanoma risk", "flag", "risk band"], rows)
        + "<h3>Parity with the eager model (validation images)</h3>"
        + h.table(
            [
                "bundle",
                "runtime",
                "computes in",
                "images",
                "max |dp|",
                "primary agrees",
                "flag agrees",
                "heat map p95 |d|",
                "gate",
            ],
            parity,
        )
        + int8_note
        + f'<div class="grid">{overlays}</div>'
        + "<h3>Latency (batch 1, per stage, this machine)</h3><pre>"
        + html_escape(dep["bench_table"])
        + "</pre>"
        + _service_html(dep.get("service"))
    )


def _operations_html(ops: dict[str, Any]) -> str:
    from dermascan.active_learning.demo import demo_html

    lc = ops["lifecycle"]
    ab = lc["abtest"]
    oc = lc["operating_characteristics"]
    return (
        "<h3>Monitoring (simulated traffic through the bundle)</h3>"
        + ops["monitoring"]["html"]
        + "<h3>Promotion gates (brief section 4.7) and the registry</h3><pre>"
        + html_escape(lc["gate_table"])
        + "</pre>"
        + _html.paragraph(
            f"Registered as {lc['registered']['name']} version {lc['registered']['version']}"
            + (f", alias {lc['registered']['alias']}" if lc["registered"]["alias"] else ", no alias (a gate failed)")
            + f"; data fingerprint {lc['registered']['data_fingerprint']}."
        )
        + "<h3>Shadow A/B decision on a simulated week</h3>"
        + _html.paragraph(
            f"Verdict: {ab['verdict']} ({'; '.join(ab['reasons'])}). The rule's operating characteristics over "
            f"20,000 simulated periods of 500 melanomas: "
            + ", ".join(f"{k.replace('_', ' ')} {v['value']:.1%} ({v['lo']:.1%}–{v['hi']:.1%})" for k, v in oc.items())
            + '. <a href="lifecycle/abtest/abtest.html">A/B report</a>.'
        )
        + "<h3>What to label next, and what it costs</h3>"
        + demo_html(ops["labelling"]).replace(
            "cost/cost.html", '<a href="active-learning/cost/cost.html">cost table</a>'
        )
    )


def _service_html(service: dict[str, Any] | None) -> str:
    if not service:
        return ""
    shown = {k: v for k, v in service.items() if not k.startswith("attention_map")}
    src = f"data:{service.get('attention_map_type')};base64,{service.get('attention_map')}"
    img = f'<img alt="attention map" src="{src}" style="max-width:240px">' if service.get("attention_map") else ""
    return (
        "<h3>The clinical service (brief section 4.2)</h3>"
        + _html.paragraph(
            "`dermascan serve` was started on this bundle (loopback, fresh SQLite store), sent the "
            "brief's request for one test image, and stopped."
        )
        + "<pre>"
        + html_escape(json.dumps(shown, indent=2))
        + "</pre>"
        + img
    )


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def _write_index(out: Path, summary: dict[str, Any], evals: dict[str, Path]) -> Path:
    sec, h = _html.Section, _html

    def ci(m: dict, f: str) -> str:
        lo, hi = m[f + "_ci"]
        return "—" if m[f] is None else f"{m[f]:.3f} ({lo:.3f}–{hi:.3f})" if lo is not None else f"{m[f]:.3f}"

    rows = [
        (
            m["name"],
            m["arch"],
            f"{m['loss']} ({m['weighting']})",
            m["decision"],
            ci(m, "sensitivity"),
            ci(m, "specificity"),
            ci(m, "auroc"),
            ci(m, "balanced_accuracy"),
            "yes" if m["meets_bar"] else "no",
        )
        for m in summary["models"]
    ]
    links = "".join(f'<li><a href="{d.relative_to(out)}/report.html">{name}</a></li>' for name, d in evals.items())
    sections = [
        sec(
            "Result",
            h.paragraph(_verdict(summary), "note")
            + h.table(
                [
                    "model",
                    "arch",
                    "loss (weighting)",
                    "decision",
                    "sensitivity",
                    "specificity",
                    "AUROC",
                    "balanced acc.",
                    "meets bar",
                ],
                rows,
            )
            + h.paragraph(
                "95% confidence intervals in brackets: Wilson for proportions, stratified bootstrap for "
                "AUROC and balanced accuracy. Thresholds were chosen on the validation split and applied "
                "unchanged to the test split."
            ),
        ),
        sec("Data", '<p><a href="eda/eda.html">Exploratory data analysis</a></p>' + h.image("eda/samples.png")),
        sec(
            "Evaluation reports",
            f"<ul>{links}</ul>"
            + h.paragraph(f"Production candidate, chosen on validation only: {summary.get('winner')}."),
        ),
    ]
    if "heatmaps" in summary:
        sections += [
            sec("Heat maps", _heatmap_html(out, summary["heatmaps"])),
            sec(
                "Error analysis and fairness",
                '<ul><li><a href="errors/errors.html">Missed melanomas</a></li>'
                '<li><a href="fairness/fairness.html">Fairness audit</a></li></ul>',
            ),
            sec("Deployment", _deployment_html(out, summary.get("deployment"))),
        ]
    if "operations" in summary:
        sections.append(sec("Operations", _operations_html(summary["operations"])))
    sections.append(sec("Timings", h.table(["step", "seconds"], list(summary["timings_s"].items()))))
    return _html.write_page(
        out / "index.html",
        "DermaScan demo",
        sections,
        subtitle=f"Synthetic dermoscopy, {summary['config']['n_images']} images; total {summary['total_s']:.0f} s",
    )
