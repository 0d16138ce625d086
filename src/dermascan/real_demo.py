"""`dermascan real-demo`: the whole pipeline on real dermoscopy (HAM10000) with what a clinic's CPU box has.

train from scratch (the ``ham10000-cpu`` preset, lesion-grouped split) -> lock the temperature and melanoma
threshold on the validation lesions -> score the held-out lesions at that locked point -> audit fairness by
age, sex and body site (HAM10000 records no Fitzpatrick type) -> export a parity-checked ONNX bundle ->
benchmark it -> ``summary.json`` and ``report.md``.

Every figure is a validation figure on held-out HAM10000 lesions (no lesion of the test split was trained on,
or chose the checkpoint, the temperature or the threshold), never an external test figure.

A finished training is not run again: a rerun keeps the trained model and repeats only the steps after it
(about a minute); delete ``OUT`` to start over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermascan import _io
from dermascan.demo import Steps
from dermascan.training.config import shipped_epoch

REPORT = "report.md"
SUMMARY = "summary.json"


@dataclass
class RealDemoConfig:
    """One real-data run.

    Attributes:
        data: dataset folder with lesion ids (e.g. ``../shared/data/ham10000-200``).
        out: output folder (``run``, ``eval``, ``fairness``, ``bundle``, ``bench.json``, the summary).
        preset: the training recipe (``ham10000-cpu``: ResNet-18-D from scratch at 96 px, 10 epochs; about
            9 minutes of training on 2 cores).
        target_sensitivity: melanoma sensitivity the threshold is locked for on validation.
        tta: lock the threshold on, and score with, the average over the image and its flips.
        bench: benchmark the exported bundle (ONNX Runtime and OpenVINO against eager PyTorch).
        train: further training keys (they win over the preset: ``epochs``, ``image_size``, ...).
    """

    data: str
    out: str
    preset: str = "ham10000-cpu"
    target_sensitivity: float = 0.90
    tta: bool = False
    bench: bool = True
    train: dict[str, Any] = field(default_factory=dict)


def run_real_demo(cfg: RealDemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every step into ``cfg.out``; returns the summary (also ``summary.json``; ``report.md`` reads it).

    Raises:
        DatasetError: the data folder cannot be read (the message says what it expects).
        ExportParityError: the exported bundle disagrees with the trained model.
    """
    from dermascan.evaluation.evaluate import audit_fairness, evaluate
    from dermascan.export import export_bundle
    from dermascan.export.benchmark import format_table, run_benchmark
    from dermascan.training.config import read_run_data, resolve_config
    from dermascan.training.train import train

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir, eval_dir, bundle = out / "run", out / "eval", out / "bundle"
    steps = Steps(echo)
    start = time.perf_counter()
    config = resolve_config(cfg.preset, data=cfg.data, out=str(run_dir), **cfg.train)
    index = steps.run("read data", lambda: read_run_data(config, progress=False))
    if not (run_dir / "last.ckpt").is_file() or not (out / "train.json").is_file():  # else trained before
        t0 = time.perf_counter()
        steps.run(
            f"train {config.arch} at {config.image_size} px for up to {config.epochs} epochs",
            lambda: train(config, index=index, progress=True),
        )
        _io.write_json(out / "train.json", {"training_minutes": (time.perf_counter() - t0) / 60})
    training_minutes = json.loads((out / "train.json").read_text())["training_minutes"]
    metrics = steps.run(
        "lock the threshold on validation, score the held-out lesions",
        lambda: evaluate(
            run_dir,
            eval_dir,
            index=index,
            tta=cfg.tta,
            target_sensitivity=cfg.target_sensitivity,
            recalibrate=True,
            progress=False,
        ),
    )
    fairness = steps.run(
        "fairness audit (age, sex, body site)",
        lambda: audit_fairness(run_dir, out / "fairness", index=index, progress=False),
    )
    steps.run("export the ONNX bundle (parity-checked)", lambda: export_bundle(run_dir, bundle, overwrite=True))
    bench = None
    if cfg.bench:
        bench = steps.run(
            "latency benchmark",
            lambda: run_benchmark(
                bundle, runtimes=["onnxruntime", "openvino"], repeats=15, batch_sizes=(8,), out_json=out / "bench.json"
            ),
        )
        _io.write_text(out / "bench.txt", format_table(bench) + "\n")
    summary = _summary(cfg, config.to_dict(), metrics, fairness, bench, training_minutes)
    summary["timings_s"] = steps.timings
    summary["total_s"] = round(time.perf_counter() - start, 1)
    _io.write_json(out / SUMMARY, summary)
    _io.write_text(out / REPORT, format_report(summary))
    echo(f"\n{headline(summary)}\nwrote {out / REPORT} ({summary['total_s'] / 60:.1f} min)")
    return summary


def _summary(
    cfg: RealDemoConfig,
    recipe: dict[str, Any],
    metrics: dict[str, Any],
    fairness: dict[str, Any],
    bench: dict[str, Any] | None,
    training_minutes: float,
) -> dict[str, Any]:
    mel, free = metrics["melanoma"], metrics["threshold_free"]
    return {
        "note": "validation figures on held-out HAM10000 lesions (lesion-grouped split), never external test figures",
        "data": cfg.data,
        "recipe": {k: v for k, v in recipe.items() if k not in ("data", "out")} | {"tta": cfg.tta},
        "training_minutes": round(training_minutes, 1),
        "held_out": {
            "n_images": metrics["n"],
            "n_melanomas": mel["n_pos"],
            "melanoma_auroc": mel["auroc"],
            "specificity_at_90_sensitivity": free["specificity_at_90_sensitivity"],
            "specificity_at_95_sensitivity": free["specificity_at_95_sensitivity"],
            "locked_threshold": mel["threshold"],
            "sensitivity": mel["sensitivity"],
            "specificity": mel["specificity"],
            "balanced_accuracy": metrics["balanced_accuracy"],
            "balanced_accuracy_argmax": metrics["argmax"]["balanced_accuracy"],
        },
        "target_sensitivity": cfg.target_sensitivity,
        "fairness": {"summary": fairness.get("summary", []), "missing": fairness.get("missing_attributes", [])},
        "latency_ms_p50": None if bench is None else _p50s(bench),
    }


def _p50s(bench: dict[str, Any]) -> dict[str, float]:
    """runtime -> p50 ms of one image (JPEG to probabilities and heat map)."""
    return {r["spec"]: r["latency_ms"]["total"]["p50"] for r in bench["results"] if "error" not in r}


def _ci(e: dict[str, Any]) -> str:
    return f"{e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"


def headline(summary: dict[str, Any]) -> str:
    h = summary["held_out"]
    return (
        f"held-out lesions ({h['n_images']} images, {h['n_melanomas']} melanomas): melanoma AUROC "
        f"{_ci(h['melanoma_auroc'])}; at the locked threshold sensitivity {_ci(h['sensitivity'])}, specificity "
        f"{_ci(h['specificity'])}"
    )


def format_report(summary: dict[str, Any]) -> str:
    """The summary as Markdown: recipe, the melanoma-first figures with intervals, fairness, latency."""
    h, r = summary["held_out"], summary["recipe"]
    lines = [
        "# DermaScan on real dermoscopy",
        "",
        f"Data: `{summary['data']}`. {summary['note'][0].upper()}{summary['note'][1:]}.",
        "",
        f"Recipe: {r['arch']} from scratch at {r['image_size']} px, up to {r['epochs']} epochs "
        f"({shipped_epoch(r.get('checkpoint', 'best'))}), loss {r['loss']}, "
        f"class weights {r['class_weighting']}{', flip TTA' if r['tta'] else ''}; "
        f"{summary['training_minutes']} minutes of training.",
        "",
        f"| figure ({h['n_images']} held-out images, {h['n_melanomas']} melanomas; 95% interval) | value |",
        "|---|---|",
        f"| melanoma AUROC | {_ci(h['melanoma_auroc'])} |",
        f"| specificity at 90% sensitivity | {_ci(h['specificity_at_90_sensitivity'])} |",
        f"| specificity at 95% sensitivity | {_ci(h['specificity_at_95_sensitivity'])} |",
        f"| locked threshold ({h['locked_threshold']:.3f}, for {summary['target_sensitivity']:.0%} sensitivity on "
        f"validation): sensitivity | {_ci(h['sensitivity'])} |",
        f"| locked threshold: specificity | {_ci(h['specificity'])} |",
        f"| balanced multi-class accuracy (at the threshold / at argmax) | {_ci(h['balanced_accuracy'])} / "
        f"{_ci(h['balanced_accuracy_argmax'])} |",
        "",
        "## Fairness (fairness/fairness.html)",
        "",
        *[f"- {line}" for line in summary["fairness"]["summary"]],
    ]
    if summary["latency_ms_p50"]:
        lines += ["", "## Latency, one 1024x768 JPEG to probabilities and heat map (bench.txt)", ""]
        lines += ["| runtime | p50 ms |", "|---|---:|"]
        lines += [f"| {spec} | {ms:.1f} |" for spec, ms in summary["latency_ms_p50"].items()]
    lines += ["", "Steps (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_s"].items())]
    return "\n".join(lines) + "\n"


__all__ = ["RealDemoConfig", "format_report", "headline", "run_real_demo"]
