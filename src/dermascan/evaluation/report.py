"""The evaluation report: the one place where a report dict is assembled from the metrics and intervals."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dermascan.decision import decide
from dermascan.evaluation._json import jsonable
from dermascan.evaluation._validate import check_labels, check_probs, check_same_length
from dermascan.evaluation.bootstrap import bootstrap_ci
from dermascan.evaluation.intervals import binary_rates, wilson_estimate
from dermascan.evaluation.metrics import (
    balanced_accuracy_score,
    binary_expected_calibration_error,
    confusion_matrix,
    expected_calibration_error,
    per_class_precision_recall_f1,
    roc_auc_score,
    specificity_at_sensitivity,
)
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

__all__ = ["THRESHOLD_FREE_NOTE", "melanoma_report"]

#: Why the threshold-free figures stand apart from the figures at the locked threshold.
THRESHOLD_FREE_NOTE = (
    "Specificity at 90% / 95% sensitivity is threshold-free: each figure picks its own threshold on the "
    "evaluated split itself (an oracle choice), so it describes the ROC curve, not the locked operating "
    "point, and its threshold is not one to use on new cases."
)


def melanoma_report(
    y_true: ArrayLike,
    probs: ArrayLike,
    threshold: float | None = None,
    melanoma_index: int = MELANOMA_INDEX,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_bins: int = 15,
    class_names: Sequence[str] = CLASSES,
) -> dict[str, Any]:
    """The full evaluation report.

    Predicted labels come from :func:`dermascan.decision.decide` with ``threshold``
    (plain argmax when ``None``); accuracy, balanced accuracy, per-class figures, the confusion matrix and
    the melanoma sensitivity/specificity/PPV/NPV are computed on those labels. AUROC and the ECEs are
    computed from the probabilities; specificity at 90% and 95% sensitivity too, in the separate
    ``threshold_free`` block (see :data:`THRESHOLD_FREE_NOTE`).

    Proportions carry Wilson intervals; AUROC, balanced accuracy and specificity-at-sensitivity carry
    stratified bootstrap intervals (``n_boot`` resamples, ``seed``). An interval is a dict
    ``{"value", "lo", "hi", "n"}``.

    Undefined values (e.g. a subgroup without melanoma) are ``None`` in the dict, each with an
    :class:`~dermascan.evaluation.metrics.UndefinedMetricWarning`: the result is strict JSON
    (``json.dumps(report, allow_nan=False)`` works) and never shows a silent 0 or 0.5.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities (rows sum to 1), shape (N, K), columns in ``class_names`` order.
        threshold: melanoma operating threshold on ``probs[:, melanoma_index]``, or ``None`` for argmax.
        melanoma_index: column of melanoma.
        n_boot: bootstrap resamples per bootstrapped metric.
        seed: bootstrap seed.
        confidence: coverage of every interval.
        n_bins: bins of the calibration errors.
        class_names: class codes, one per column (the taxonomy order by default).

    Returns:
        A JSON-serialisable dict; see the keys in the code below and the example in the tests.
    """
    p = check_probs(probs, "probs")
    num_classes = p.shape[1]
    y = check_labels(y_true, "y_true", num_classes)
    check_same_length(y, p, "y_true", "probs")
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but probs has {num_classes} columns")
    if not 0 <= melanoma_index < num_classes:
        raise ValueError(f"melanoma_index {melanoma_index} is outside 0..{num_classes - 1}")

    y_pred = decide(p, threshold, melanoma_index)
    cm = confusion_matrix(y, y_pred, num_classes)
    prf = per_class_precision_recall_f1(y, y_pred, num_classes)
    boot = {"n_boot": n_boot, "confidence": confidence, "seed": seed}

    per_class = {}
    for c, name in enumerate(class_names):
        per_class[name] = {
            "precision": prf["precision"][c],
            "recall": wilson_estimate(int(cm[c, c]), int(cm[c].sum()), confidence, what=f"recall of {name}"),
            "f1": prf["f1"][c],
            "support": int(cm[c].sum()),
        }

    mel_true = (y == melanoma_index).astype(np.int64)
    mel_pred = (y_pred == melanoma_index).astype(np.int64)
    p_mel = p[:, melanoma_index]
    rates = binary_rates(mel_true, mel_pred, confidence)
    melanoma: dict[str, Any] = {
        "threshold": None if threshold is None else float(threshold),
        "n_pos": rates.n_pos,
        "n_neg": rates.n_neg,
        "prevalence": rates.n_pos / len(y),
        "counts": rates.counts._asdict(),
        "sensitivity": rates.sensitivity,
        "specificity": rates.specificity,
        "ppv": rates.ppv,
        "npv": rates.npv,
        "auroc": bootstrap_ci(roc_auc_score, mel_true, p_mel, **boot),
        "ece": binary_expected_calibration_error(mel_true, p_mel, n_bins),
    }
    threshold_free: dict[str, Any] = {"note": THRESHOLD_FREE_NOTE}
    for target in (0.90, 0.95):
        fn = functools.partial(specificity_at_sensitivity, target=target)
        threshold_free[f"specificity_at_{round(target * 100)}_sensitivity"] = bootstrap_ci(fn, mel_true, p_mel, **boot)

    report = {
        "n": len(y),
        "classes": list(class_names),
        "decision": "argmax" if threshold is None else "threshold",
        "confidence": confidence,
        "n_boot": n_boot,
        "accuracy": wilson_estimate(int(np.trace(cm)), len(y), confidence),
        "balanced_accuracy": bootstrap_ci(
            functools.partial(balanced_accuracy_score, num_classes=num_classes), y, y_pred, **boot
        ),
        "per_class": per_class,
        "confusion_matrix": cm,
        "ece": expected_calibration_error(y, p, n_bins),
        "melanoma": melanoma,
        "threshold_free": threshold_free,
    }
    return jsonable(report)
