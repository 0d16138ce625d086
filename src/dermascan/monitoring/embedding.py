"""Embedding drift: a two-sample test (MMD, permutation p-value) between the reference sample in the bundle
and a window's embeddings.

Which embedding: the model's penultimate features, the graph's third output, projected by the bundle's PCA
(:mod:`dermascan.inference.embedding`) and stored with each prediction. They see a change of what is
photographed (a new dermoscope, another population) in every direction the network represents, including
those the classifier happens to ignore today.

A bundle exported before the features output has none; for it the embedding is the logit space recovered from
the stored probabilities (:func:`embeddings_of`): the centred log-probabilities are the centred logits over T
(softmax is shift-invariant, so ``log p - mean(log p) = (z - mean z) / T``), and the logits are the classifier's
linear projection of the penultimate features. That sees a change only along the directions the model uses to
decide. The reference records which space it was measured in (``embedding_space``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Probabilities are clipped here before the log: a float32 softmax can round a class to 0.
_EPS = 1e-7


def embeddings_of(probabilities: np.ndarray) -> np.ndarray:
    """Centred log-probabilities (N, K): the centred logits over T (see the module docstring)."""
    logp = np.log(np.clip(np.asarray(probabilities, np.float64), _EPS, 1.0))  # (N, K)
    return logp - logp.mean(axis=1, keepdims=True)


def _sq_dists(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)  # (N, N)


def _mmd2(k: np.ndarray, a: np.ndarray) -> float:
    """Unbiased MMD^2 of the samples marked True / False in ``a`` under the kernel matrix ``k``."""
    b = ~a
    m, n = int(a.sum()), int(b.sum())
    kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


@dataclass(frozen=True)
class MMDResult:
    """An MMD two-sample test.

    Attributes:
        mmd2: the unbiased squared MMD of the observed split (Gaussian kernel, median-distance bandwidth).
        p_value: permutation p-value, ``(1 + #{permuted >= observed}) / (1 + permutations)``.
        n_reference: reference sample size.
        n_window: window sample size.
    """

    mmd2: float
    p_value: float
    n_reference: int
    n_window: int


def mmd_test(reference: np.ndarray, window: np.ndarray, permutations: int = 200, seed: int = 0) -> MMDResult:
    """Kernel two-sample test of ``reference`` (M, D) against ``window`` (N, D); both need at least 2 rows.

    The bandwidth is the median pairwise distance of the pooled sample (the usual heuristic); the permutation
    null re-splits the pooled sample at random, so the p-value holds whatever the kernel.
    """
    x, y = np.asarray(reference, np.float64), np.asarray(window, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"an MMD test needs at least 2 rows per sample, got {len(x)} and {len(y)}")
    pooled = np.concatenate([x, y])  # (M + N, D)
    d2 = _sq_dists(pooled)
    med = np.median(d2[np.triu_indices(len(pooled), 1)])
    k = np.exp(-d2 / (med if med > 0 else 1.0))  # (M + N, M + N)
    first = np.zeros(len(pooled), bool)
    first[: len(x)] = True
    observed = _mmd2(k, first)
    rng = np.random.default_rng(seed)
    hits = sum(_mmd2(k, rng.permutation(first)) >= observed for _ in range(permutations))
    return MMDResult(observed, (1 + hits) / (1 + permutations), len(x), len(y))


__all__ = ["MMDResult", "embeddings_of", "mmd_test"]
