"""The embedding projection: a PCA of the penultimate features, shipped in the bundle and applied by the Predictor."""

from __future__ import annotations

import numpy as np
import pytest

from dermascan.inference.embedding import EmbeddingProjection, read_projection, write_projection


def _features(n: int = 400, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features that vary mostly along one known direction (and a little along all others)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    f = 3.0 + rng.normal(size=(n, 1)) * 5.0 * direction + rng.normal(size=(n, d)) * 0.1  # (N, D)
    return f.astype(np.float32), direction


def test_pca_finds_the_direction_the_features_vary_along() -> None:
    f, direction = _features()
    p = EmbeddingProjection.fit(f, dims=4)
    assert p.components.shape == (64, 4) and p.dims == 4 and p.n_fitted == 400
    assert abs(float(p.components[:, 0] @ direction)) > 0.99
    assert p.explained[0] > 0.9 and np.all(np.diff(p.explained) <= 0)
    np.testing.assert_allclose(p.components.T @ p.components, np.eye(4), atol=1e-5)  # orthonormal
    e = p(f)  # (N, 4)
    assert e.shape == (400, 4)
    np.testing.assert_allclose(e.mean(axis=0), 0.0, atol=1e-3)  # centred on what it was fitted on
    assert e[:, 0].std() > 10 * e[:, 1].std()


def test_dims_are_capped_by_the_rows_and_too_few_rows_are_refused() -> None:
    f, _ = _features(n=5)
    assert EmbeddingProjection.fit(f, dims=16).dims == 4  # N - 1
    with pytest.raises(ValueError, match="at least 3"):
        EmbeddingProjection.fit(f[:2])


def test_round_trip_through_the_bundle_file_and_a_wrong_model_is_named(tmp_path) -> None:
    f, _ = _features()
    p = EmbeddingProjection.fit(f)
    path = write_projection(tmp_path, p)
    q = read_projection(path)
    np.testing.assert_allclose(q(f[:10]), p(f[:10]), atol=1e-5)
    assert q.dims == p.dims and q.n_fitted == p.n_fitted
    with pytest.raises(ValueError, match="another model"):
        q(np.zeros((2, 32), np.float32))
