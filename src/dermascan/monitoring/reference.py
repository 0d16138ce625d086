"""The training reference that drift detection compares with, written by ``dermascan export`` into the bundle
(``reference.json``, listed with its sha256 in the manifest like every bundle file).

* Image features (:mod:`~dermascan.monitoring.features`) of the **training** split: for each, the inner edges of
  quantile bins (:func:`bins_for`: 10, fewer for a small training split) and the training share in each bin
  (PSI's expected distribution), and the 0.5 / 99.5 percentiles (the range a served image is flagged outside of).
* Predictions of **held-out** images (the export passes the test split, or validation and test when the test split
  is small; the model fitted the training split and was selected and thresholded on validation, so both flag
  more than new traffic will): the melanoma-flag rate at the locked threshold, the predicted class mix, and a
  sample of the embeddings for the two-sample test: the penultimate features through the projection fitted on
  these same images (:mod:`dermascan.inference.embedding`, ``embedding_space`` ``penultimate``), or, for a graph
  without the features output, the centred log-probabilities (``logits``, see
  :func:`~dermascan.monitoring.embedding.embeddings_of`).

numpy only: the monitor reads it without torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermascan import _io
from dermascan.errors import DermaScanError
from dermascan.inference.embedding import EmbeddingProjection
from dermascan.monitoring.features import FEATURES

if TYPE_CHECKING:
    from dermascan.inference import Predictor

REFERENCE_FILE = "reference.json"
N_BINS = 10
#: At least this many training images per bin: a bin's training share is PSI's denominator, and a share measured
#: on a handful of images makes the index noisy on every window (its expected value between two samples of one
#: distribution is about ``(bins - 1) (1/n + 1/m)``).
MIN_PER_BIN = 100
EMBEDDING_SAMPLE = 300
RANGE_PERCENTILES = (0.5, 99.5)


class ReferenceError(DermaScanError, ValueError):
    """A bundle without a usable training reference, with the fix."""


@dataclass(frozen=True)
class FeatureReference:
    """One feature's training distribution.

    Attributes:
        edges: the ``N_BINS - 1`` inner bin edges (training quantiles); the outer bins are open.
        expected: training share in each of the ``N_BINS`` bins (sums to 1).
        low: 0.5th percentile on training (a served value below it is flagged).
        high: 99.5th percentile on training.
    """

    edges: list[float]
    expected: list[float]
    low: float
    high: float


@dataclass(frozen=True)
class Reference:
    """The training reference of one bundle (see the module docstring)."""

    features: dict[str, FeatureReference]
    n_train: int
    flag_rate: float
    class_mix: dict[str, float]
    n_held_out: int
    embeddings: np.ndarray  # (E, D)
    embedding_space: str = "logits"  # penultimate (the projected features) or logits (centred log-probabilities)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {k: vars(v) for k, v in self.features.items()},
            "n_train": self.n_train,
            "flag_rate": self.flag_rate,
            "class_mix": self.class_mix,
            "n_held_out": self.n_held_out,
            "embedding_space": self.embedding_space,
            "embeddings": np.round(self.embeddings, 5).tolist(),
        }


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each bin of the inner ``edges`` (``len(edges) + 1`` open-ended bins).

    A value equal to an edge goes to the upper bin (``numpy.searchsorted(side="right")``), on the reference and
    on every window alike.
    """
    idx = np.searchsorted(np.asarray(edges, np.float64), np.asarray(values, np.float64), side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def bins_for(n_train: int) -> int:
    """Quantile bins for a training split of ``n_train`` images: :data:`N_BINS`, or fewer (at least 4) so each bin
    holds :data:`MIN_PER_BIN` images."""
    return int(min(N_BINS, max(4, n_train // MIN_PER_BIN)))


def feature_reference(values: np.ndarray, n_bins: int = N_BINS) -> FeatureReference:
    """Quantile bins of one feature's training values (ties merge bins: edges are unique)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ReferenceError("a training reference needs at least one image with finite features")
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = bin_counts(values, edges)
    lo, hi = np.percentile(values, RANGE_PERCENTILES)
    return FeatureReference(
        edges=[float(e) for e in edges],
        expected=[float(c) for c in counts / counts.sum()],
        low=float(lo),
        high=float(hi),
    )


def build_reference(
    train_features: list[dict[str, float]],
    held_out_probabilities: np.ndarray,
    held_out_flags: np.ndarray,
    classes: list[str],
    embeddings: np.ndarray,
    sample: int = EMBEDDING_SAMPLE,
    seed: int = 0,
    embedding_space: str = "logits",
) -> Reference:
    """The reference from training-split features and predictions on held-out images.

    Args:
        train_features: one :func:`~dermascan.monitoring.features.image_features` dict per training image.
        held_out_probabilities: calibrated probabilities on the held-out images, (N, K).
        held_out_flags: melanoma flags at the locked threshold, (N,).
        classes: class codes of the probability columns.
        embeddings: the held-out embeddings, (N, D); at most ``sample`` rows are kept (drawn at random).
        sample: embedding sample size.
        seed: seed of that draw.
        embedding_space: ``penultimate`` (projected features) or ``logits`` (centred log-probabilities).
    """
    if not train_features or len(held_out_flags) == 0:
        raise ReferenceError("a training reference needs training images and held-out predictions")
    n_bins = bins_for(len(train_features))
    feats = {f: feature_reference(np.array([row[f] for row in train_features], np.float64), n_bins) for f in FEATURES}
    probs = np.asarray(held_out_probabilities, np.float64)  # (N, K)
    mix = np.bincount(probs.argmax(axis=1), minlength=len(classes)) / len(probs)
    emb = np.asarray(embeddings, np.float64)  # (N, D)
    if len(emb) > sample:
        emb = emb[np.sort(np.random.default_rng(seed).choice(len(emb), sample, replace=False))]
    return Reference(
        features=feats,
        n_train=len(train_features),
        flag_rate=float(np.mean(np.asarray(held_out_flags, bool))),
        class_mix={c: float(m) for c, m in zip(classes, mix, strict=True)},
        n_held_out=len(probs),
        embeddings=emb,
        embedding_space=embedding_space,
    )


def _spread(items: list, limit: int) -> list:
    """At most ``limit`` of ``items``, spread evenly (a split is often sorted by class)."""
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def reference_from_images(
    predictor: Predictor,
    train_images: list[str | os.PathLike[str]],
    held_out_images: list[str | os.PathLike[str]],
    max_train: int = 2000,
    max_held_out: int = 1000,
) -> tuple[Reference, EmbeddingProjection | None]:
    """Measure the reference: features of (at most ``max_train``) training images, and ``predictor``'s answers on
    (at most ``max_held_out``) held-out images, in one pass over them. Unreadable images are skipped (the
    export's parity check reports them).

    When the predictor's graph returns the penultimate features, the embedding projection is fitted on the
    held-out features here (the bundle ships it, so the Predictor projects served images the same way) and the
    reference's embeddings are the projected ones.

    Returns:
        The reference, and the projection (``None`` for a graph without the features output).

    Raises:
        ReferenceError: no readable held-out image.
    """
    from dermascan.data.io import ImageError, capture_size, image_size, load_image
    from dermascan.monitoring.embedding import embeddings_of
    from dermascan.monitoring.features import image_features

    feats = []
    draft = predictor.card.preprocessing.jpeg_draft  # decoded as the service decodes what it is sent
    for path in _spread(train_images, max_train):
        try:
            rgb = load_image(path, draft=draft)
            feats.append(image_features(rgb, size=capture_size(image_size(path), rgb)))
        except ImageError:
            continue
    prepared = [p.x for p in map(predictor.prepare, _spread(held_out_images, max_held_out)) if p.error is None]
    if not prepared:
        raise ReferenceError("no held-out image could be read for the training reference")
    step = predictor.batch_size
    outputs = [predictor.infer(np.stack(prepared[i : i + step])) for i in range(0, len(prepared), step)]
    probs = predictor.probabilities(np.concatenate([o.logits for o in outputs]))  # (N, K)
    _, flags = predictor.decide(probs)
    classes = list(predictor.card.classes)
    projection, space, emb = None, "logits", embeddings_of(probs)
    if all(o.features is not None for o in outputs) and len(probs) >= 3:
        features = np.concatenate([o.features for o in outputs])  # (N, D)
        projection = EmbeddingProjection.fit(features)
        space, emb = "penultimate", projection(features)  # (N, k)
    return build_reference(feats, probs, flags, classes, emb, embedding_space=space), projection


def write_reference(folder: str | os.PathLike[str], reference: Reference) -> Path:
    """Write ``folder/reference.json`` (atomically)."""
    return _io.write_json(Path(folder) / REFERENCE_FILE, reference.to_dict())


def load_reference(bundle: str | os.PathLike[str]) -> Reference:
    """The reference of a bundle folder (verify the bundle first: :func:`dermascan.inference.bundle.verify_bundle`).

    Raises:
        ReferenceError: the bundle has none (exported before monitoring, or without a training split).
    """
    path = Path(bundle) / REFERENCE_FILE
    if not path.is_file():
        raise ReferenceError(
            f"bundle {bundle} has no {REFERENCE_FILE} (the training reference drift is measured against): "
            "export it again with `dermascan export --run RUN --out B` from a run whose data set is here"
        )
    raw = json.loads(path.read_text())
    return Reference(
        features={k: FeatureReference(**v) for k, v in raw["features"].items()},
        n_train=int(raw["n_train"]),
        flag_rate=float(raw["flag_rate"]),
        class_mix={k: float(v) for k, v in raw["class_mix"].items()},
        n_held_out=int(raw["n_held_out"]),
        embeddings=np.asarray(raw["embeddings"], np.float64).reshape(len(raw["embeddings"]), -1),
        embedding_space=str(raw.get("embedding_space", "logits")),  # bundles exported before: logits
    )


__all__ = [
    "EMBEDDING_SAMPLE",
    "MIN_PER_BIN",
    "N_BINS",
    "REFERENCE_FILE",
    "FeatureReference",
    "Reference",
    "ReferenceError",
    "bin_counts",
    "bins_for",
    "build_reference",
    "feature_reference",
    "load_reference",
    "reference_from_images",
    "write_reference",
]
