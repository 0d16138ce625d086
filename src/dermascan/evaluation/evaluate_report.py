"""What an evaluation writes beside its figures: the ISIC submission and DermaScan's decisions, the in-sample
block of ``metrics.json``, ``report.html`` and the console rows of the headline figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _html
from dermascan.decision import decide
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

__all__ = [
    "SUBMISSION_NOTE",
    "decision_table",
    "fmt_estimate",
    "headline_rows",
    "in_sample",
    "submission_table",
    "threshold_free_rows",
    "write_report",
]

#: What the ISIC 2018 scorer reproduces from predictions.csv, and what needs decisions.csv.
SUBMISSION_NOTE = (
    "predictions.csv is the ISIC 2018 Task 3 submission: the image and the 7 calibrated probabilities, nothing "
    "else. The official scorer takes the argmax of each row, so it reproduces the 'at argmax' figures (accuracy, "
    "balanced multiclass accuracy, per-class recall) and the AUROCs, which need no decision. It does not know "
    "DermaScan's locked melanoma threshold: a lesion with p(MEL) 0.30 and p(NV) 0.70 at threshold 0.25 is "
    "melanoma for DermaScan and nevus for the scorer. DermaScan's decision of each image (decision, "
    "melanoma_flag, threshold) is in decisions.csv, which the scorer never reads; the 'at threshold' figures "
    "(melanoma sensitivity, specificity, PPV, NPV, accuracy and balanced accuracy at the threshold) come from it."
)


def submission_table(images: Any, probs: np.ndarray) -> pd.DataFrame:
    """The ISIC 2018 Task 3 submission: ``image`` and one probability column per class, nothing else."""
    table = pd.DataFrame({"image": np.asarray(images)})
    for k, code in enumerate(CLASSES):
        table[code] = probs[:, k]
    return table


def decision_table(images: Any, probs: np.ndarray, threshold: float | None) -> pd.DataFrame:
    """DermaScan's decision of each image, beside the submission (which the ISIC scorer argmaxes).

    Columns: ``image``, ``decision`` (the class code by :func:`~dermascan.decision.decide`; melanoma when
    ``p(MEL) >= threshold`` even if another class is more probable), ``melanoma_flag`` and ``threshold``.
    """
    pred = decide(probs, threshold)
    return pd.DataFrame({"image": np.asarray(images), "decision": [CLASSES[k] for k in pred],
                         "melanoma_flag": pred == MELANOMA_INDEX, "threshold": threshold})  # fmt: skip


def in_sample(split: str) -> dict[str, Any]:
    """Which figures of metrics.json were measured on data that also fitted something (so are optimistic)."""
    fitted = {"val": "checkpoint selection (on uncalibrated probabilities), the temperature and the threshold",
              "train": "the weights"}  # fmt: skip
    figures = ["operating_point.validation"]
    if split in fitted:
        figures.append(f"every figure of this file: the evaluated split ({split}) also served {fitted[split]}")
    note = ("The validation split served checkpoint selection (on uncalibrated probabilities), the temperature "
            "and the threshold, so the figures in operating_point.validation are in-sample: optimistic, not an "
            "estimate of performance on new patients.")  # fmt: skip
    if split in fitted:
        note += f" The evaluated split is {split!r} itself, which also served {fitted[split]}: every figure here is."
    return {"validation_served": ["checkpoint selection", "temperature", "threshold"], "figures": figures,
            "out_of_sample": split not in fitted, "note": note}  # fmt: skip


def fmt_estimate(est: dict | None) -> str:
    """``value (lo–hi)`` of an estimate dict, or an em dash when undefined."""
    if not est or est.get("value") is None:
        return "—"
    lo, hi = est.get("lo"), est.get("hi")
    ci = f" ({lo:.3f}–{hi:.3f})" if lo is not None and hi is not None else ""
    return f"{est['value']:.3f}{ci}"


def headline_rows(m: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, at threshold, at argmax) rows for a report or a console table."""
    a, t = m["argmax"], m
    keys = [("melanoma sensitivity", "sensitivity"), ("melanoma specificity", "specificity"),
            ("melanoma PPV", "ppv"), ("melanoma NPV", "npv"), ("melanoma AUROC", "auroc")]  # fmt: skip
    rows = [(label, fmt_estimate(t["melanoma"].get(k)), fmt_estimate(a["melanoma"].get(k))) for label, k in keys]
    for label, k in (("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy")):
        rows.append((label, fmt_estimate(t[k]), fmt_estimate(a[k])))
    return rows


def threshold_free_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of the threshold-free block: never a threshold to use."""
    free = m["threshold_free"]
    return [(f"specificity at {t}% sensitivity", fmt_estimate(free.get(f"specificity_at_{t}_sensitivity")))
            for t in (90, 95)]  # fmt: skip


def write_report(out: Path, m: dict[str, Any]) -> Path:
    """Write ``out/report.html`` from the metrics dict of :func:`~dermascan.evaluation.evaluate.evaluate`."""
    sec, h = _html.Section, _html
    op = m["operating_point"]
    sens = m["melanoma"]["sensitivity"]
    spec = m["melanoma"]["specificity"]
    bar = (sens.get("value") or 0) >= 0.90 and (spec.get("value") or 0) >= 0.85
    verdict = (f'<p class="{"ok" if bar else "flag"}">Clinical bar (sensitivity ≥ 0.90 with specificity ≥ 0.85): '
               f'{"met" if bar else "not met"} at the locked threshold.</p>')  # fmt: skip
    per_class = [(c, m["per_class"][c]["precision"], fmt_estimate(m["per_class"][c]["recall"]),
                  m["per_class"][c]["f1"], m["per_class"][c]["support"]) for c in CLASSES]  # fmt: skip
    in_sample = m["in_sample"]
    sections = [
        sec("Headline", verdict + h.table(["figure (95% CI)", f"at threshold {op['threshold']:.4f}", "at argmax"],
                                          headline_rows(m))
            + h.paragraph(f"Split: {m['split']} ({m['n']} images, {m['melanoma']['n_pos']} melanomas). "
                          f"Threshold chosen on the validation split for {op['target_sensitivity']:.0%} sensitivity "
                          f"({op['criterion']} criterion) and applied unchanged here.")
            + h.paragraph(in_sample["note"], "" if in_sample["out_of_sample"] else "flag")),
        sec("Threshold-free figures", h.table(["figure (95% CI)", "value"], threshold_free_rows(m))
            + h.paragraph(m["threshold_free"]["note"])),
        sec("Melanoma ROC", h.image("roc.png", "ROC curve")),
        sec("Confusion matrix", h.image("confusion_matrix.png", "confusion matrix")),
        sec("Per class", h.table(["class", "precision", "recall (95% CI)", "F1", "support"], per_class)
            + h.image("per_class_f1.png", "per-class F1")),
        sec("Calibration", h.paragraph(
            f"Temperature {m['calibration']['temperature']:.3f} fitted on validation; top-label ECE "
            f"{m['calibration']['ece_before']:.3f} before, {m['calibration']['ece_after']:.3f} after.")
            + h.image("reliability.png", "reliability diagram")),
        sec("Files: the ISIC submission and DermaScan's decisions", h.paragraph(SUBMISSION_NOTE)),
    ]  # fmt: skip
    run = m["run"]
    return _html.write_page(out / "report.html", f"Evaluation: {Path(run['path']).name}", sections,
                            subtitle=f"{run['arch']}, loss {run['loss']} ({run['class_weighting']}), "
                            f"data {run['data']}")  # fmt: skip
