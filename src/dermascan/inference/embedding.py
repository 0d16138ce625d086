"""The embedding a prediction carries: the model's penultimate features, projected to a few dimensions.

The graph's ``features`` output (the pooled last-stage features of a CNN, the class token of a ViT: 512 to
2,048 numbers) is what the classifier reads. Drift monitoring needs it per prediction, but 2,048 floats a row
is 8 KB, 4 GB a month at the brief's 500,000 scans. So ``dermascan export`` fits a PCA on the held-out images'
features and ships it in the bundle (``embedding.json``, checksummed like every bundle file); the Predictor
projects each prediction's features onto its first :data:`DIMS` components, and the store keeps those.

Why PCA rather than a random projection: a two-sample test on the projection sees the directions the
features actually vary along on the training data, where a change of what is photographed shows first.
Any fixed projection keeps the test valid (the reference is projected the same way); PCA keeps its power.

numpy only: the serving image has no torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermascan import _io

EMBEDDING_FILE = "embedding.json"
#: Components kept (the store's ``embedding`` column holds this many floats).
DIMS = 16


@dataclass(frozen=True)
class EmbeddingProjection:
    """``(features - mean) @ components``: (B, D) penultimate features -> (B, k) embedding.

    Attributes:
        mean: (D,) mean of the features it was fitted on.
        components: (D, k) orthonormal principal directions, by decreasing variance.
        explained: share of the features' variance each component explains, (k,).
        n_fitted: images it was fitted on.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    n_fitted: int

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, np.float32)  # (B, D)
        if f.ndim != 2 or f.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features of shape {f.shape} do not match the projection's {self.mean.shape[0]} inputs: the bundle's "
                f"{EMBEDDING_FILE} belongs to another model"
            )
        return (f - self.mean) @ self.components  # (B, k)

    @classmethod
    def fit(cls, features: np.ndarray, dims: int = DIMS) -> EmbeddingProjection:
        """PCA of ``features`` (N, D) by SVD; ``dims`` is capped at ``min(N - 1, D)``.

        Raises:
            ValueError: fewer than 3 rows.
        """
        f = np.asarray(features, np.float64)  # (N, D)
        if f.ndim != 2 or len(f) < 3:
            raise ValueError(f"an embedding projection needs at least 3 feature rows, got shape {f.shape}")
        mean = f.mean(axis=0)  # (D,)
        _, s, vt = np.linalg.svd(f - mean, full_matrices=False)  # vt (min(N, D), D)
        k = min(dims, len(f) - 1, f.shape[1])
        var = s**2
        return cls(
            mean=mean.astype(np.float32),
            components=np.ascontiguousarray(vt[:k].T, np.float32),  # (D, k)
            explained=(var[:k] / var.sum()).astype(np.float32) if var.sum() > 0 else np.zeros(k, np.float32),
            n_fitted=len(f),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "PCA of the held-out images' penultimate features",
            "inputs": int(self.mean.shape[0]),
            "dims": self.dims,
            "n_fitted": self.n_fitted,
            "explained_variance": [round(float(v), 6) for v in self.explained],
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EmbeddingProjection:
        mean = np.asarray(raw["mean"], np.float32)
        components = np.asarray(raw["components"], np.float32).reshape(len(mean), -1)
        return cls(mean, components, np.asarray(raw["explained_variance"], np.float32), int(raw["n_fitted"]))


def write_projection(folder: str | os.PathLike[str], projection: EmbeddingProjection) -> Path:
    """Write ``folder/embedding.json`` (atomically)."""
    return _io.write_json(Path(folder) / EMBEDDING_FILE, projection.to_dict())


def read_projection(path: str | os.PathLike[str]) -> EmbeddingProjection:
    """Read an ``embedding.json`` (a verified bundle's: the manifest checksums it)."""
    return EmbeddingProjection.from_dict(json.loads(Path(path).read_text()))


__all__ = ["DIMS", "EMBEDDING_FILE", "EmbeddingProjection", "read_projection", "write_projection"]
