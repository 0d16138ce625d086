"""The two per-batch steps that both engines run, so the local and the Ray engine cannot drift apart.

1. :func:`decode_batch` (no model needed): read each file's bytes and turn them into the network input with
   :func:`dermascan.inference.prepare_image`, the Predictor's own decode and preprocessing. The Ray engine
   runs it in tasks ahead of the actors; the local engine in threads ahead of the runtime.
2. :func:`score_batch` (the model): the Predictor's runtime, calibration and decision rule
   (:meth:`~dermascan.inference.Predictor.infer`, ``probabilities``, ``decide``) -> one output row per image.

Between the two, a batch is a dict of numpy arrays: ``image_id`` and ``path`` (strings), ``x`` float32
(B, 3, S, S) (zeros where decoding failed) and ``error`` ("" when the image decoded). An empty string rather
than ``None`` marks success because Ray Data turns an all-``None`` column into Arrow's null type, which then
fails to concatenate with a block that has an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from dermascan.config import Preprocessing
from dermascan.decision import risk_band
from dermascan.inference import Predictor, prepare_image
from dermascan.scoring.sources import read_bytes
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX


def output_schema(classes: tuple[str, ...] = CLASSES) -> pa.Schema:
    """Columns of the output Parquet file: one row per image; an image that failed has only its ``error``
    (and the model columns) filled in."""
    return pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            *(pa.field(code, pa.float64()) for code in classes),  # calibrated probabilities, ISIC 2018 order
            pa.field("primary", pa.string()),  # class code by DermaScan's decision rule
            pa.field("confidence", pa.float64()),
            pa.field("melanoma_risk", pa.float64()),
            pa.field("melanoma_flag", pa.bool_()),
            pa.field("risk_band", pa.string()),
            pa.field("threshold", pa.float64()),  # null: an uncalibrated model
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("bundle_digest", pa.string(), nullable=False),
            pa.field("error", pa.string()),  # null when the image was scored
        ]
    )


def decode_batch(
    batch: dict[str, np.ndarray], preprocessing: Preprocessing, storage_options: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Read and preprocess a batch of listed images; a file that cannot be read or decoded gets its error.

    Args:
        batch: ``image_id`` and ``path`` arrays (B,).
        preprocessing: the bundle's preprocessing.
        storage_options: passed to fsspec (credentials, endpoint) for URLs.

    Returns:
        ``image_id``, ``path``, ``x`` float32 (B, 3, S, S) and ``error`` (B,) ("" when decoded).
    """
    paths = [str(p) for p in batch["path"]]
    side = preprocessing.input_size
    x = np.zeros((len(paths), 3, side, side), dtype=np.float32)  # (B, 3, S, S)
    errors = np.full(len(paths), "", dtype=object)
    for i, path in enumerate(paths):
        try:
            data = read_bytes(path, storage_options)
        except Exception as e:  # a missing, unreadable or remote-failed file is one error row, never a failed job
            errors[i] = f"{path}: could not be read ({type(e).__name__}: {e})"
            continue
        prepared = prepare_image(data, preprocessing, name=path)
        if prepared.error is not None:
            errors[i] = prepared.error
        else:
            x[i] = prepared.x
    return {
        "image_id": np.asarray([str(v) for v in batch["image_id"]], dtype=object),
        "path": np.asarray(paths, dtype=object),
        "x": x,
        "error": errors,
    }


def score_batch(predictor: Predictor, batch: dict[str, np.ndarray], bundle_digest: str) -> pa.Table:
    """Output rows for a decoded batch (see :func:`output_schema`).

    Args:
        predictor: the loaded bundle on its runtime.
        batch: the output of :func:`decode_batch`.
        bundle_digest: sha256 of the bundle's manifest, written on every row (which model scored it).
    """
    card = predictor.card
    errors = [str(e) for e in batch["error"]]
    ok = np.asarray([e == "" for e in errors], dtype=bool)  # (B,)
    n, k = len(errors), len(card.classes)
    probs = np.full((n, k), np.nan)  # (B, K)
    primary = np.zeros(n, dtype=np.int64)
    flags = np.zeros(n, dtype=bool)
    if ok.any():
        logits = predictor.infer(np.asarray(batch["x"], dtype=np.float32)[ok]).logits  # (G, K)
        probs[ok] = predictor.probabilities(logits)
        primary[ok], flags[ok] = predictor.decide(probs[ok])
    bands = card.policy.risk_bands
    p_mel = probs[:, MELANOMA_INDEX]
    rows = range(n)
    columns: dict[str, Any] = {
        "image_id": [str(v) for v in batch["image_id"]],
        "path": [str(v) for v in batch["path"]],
        **{code: pa.array(probs[:, j], mask=~ok) for j, code in enumerate(card.classes)},
        "primary": [card.classes[primary[i]] if ok[i] else None for i in rows],
        "confidence": pa.array(probs[np.arange(n), primary], mask=~ok),
        "melanoma_risk": pa.array(p_mel, mask=~ok),
        "melanoma_flag": pa.array(flags, mask=~ok),
        "risk_band": [
            str(risk_band(min(max(float(p_mel[i]), 0.0), 1.0), bands)) if ok[i] and bands else None for i in rows
        ],
        "threshold": [card.policy.threshold] * n,
        "model_version": [card.version] * n,
        "bundle_digest": [bundle_digest] * n,
        "error": [None if ok[i] else errors[i] for i in rows],
    }
    return pa.table(columns, schema=output_schema(card.classes))


__all__ = ["decode_batch", "output_schema", "score_batch"]
