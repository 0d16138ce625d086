"""Which unlabelled images to send for a label: the acquisition strategies, pure numpy.

Each strategy turns what the model says about a pool (:class:`PoolScores`) into a :class:`Ranking`: the
``budget`` images to label first, best first, each with its score and a one-line reason a clinician can
read. The strategies:

* ``random``: the control every other one is measured against.
* ``entropy``: Shannon entropy of the 7-class probabilities (the model cannot tell the classes apart).
* ``margin``: one minus the gap between the two most likely classes.
* ``melanoma-boundary``: closeness of p(melanoma) to the run's locked threshold. Only there does a label
  move the clinical decision (flag or no flag); an image at p = 0.9 or 0.01 is decided whatever its class.
* ``bald``: Bayesian active learning by disagreement, the mutual information between the label and the
  model: entropy of the mean prediction minus the mean entropy over stochastic views (here test-time
  flips: ResNets have no dropout to sample). High when the views disagree, not merely when each is unsure.
* ``kcenter``: k-center greedy (the core-set of Sener & Savarese, 2018) on the model's embeddings: each
  pick is the image farthest from everything labelled or already picked, so a batch covers the pool
  instead of piling up in one uncertain corner.

Uncertainty strategies rank by score alone: a batch of them may hold near-duplicates; ``kcenter`` trades
that for coverage. Ties are broken by a seeded random order, never by file order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dermascan.errors import ConfigError
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX


@dataclass(frozen=True)
class PoolScores:
    """What a model says about the images of a pool.

    Attributes:
        names: one name per image (a path, or a prediction id of the store).
        probs: calibrated probabilities (N, K), the plain view (the one the locked threshold was fitted on).
        view_probs: probabilities of stochastic views (V, N, K) for ``bald``; ``None`` when not computed.
        embeddings: penultimate-layer features (N, D) for ``kcenter``; ``None`` when not computed.
        labelled_embeddings: features (M, D) of images already labelled (``kcenter`` starts from them).
        threshold: the locked melanoma threshold (``melanoma-boundary``); ``None`` for an uncalibrated model.
    """

    names: list[str]
    probs: np.ndarray
    view_probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    labelled_embeddings: np.ndarray | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.probs.ndim != 2 or self.probs.shape[0] != n:
            raise ValueError(f"probs must be (N, K) with N = {n} names, got shape {self.probs.shape}")
        if self.view_probs is not None and (self.view_probs.ndim != 3 or self.view_probs.shape[1] != n):
            raise ValueError(f"view_probs must be (V, N, K) with N = {n}, got shape {self.view_probs.shape}")
        if self.embeddings is not None and (self.embeddings.ndim != 2 or self.embeddings.shape[0] != n):
            raise ValueError(f"embeddings must be (N, D) with N = {n}, got shape {self.embeddings.shape}")


@dataclass(frozen=True)
class Ranking:
    """The images to label first, best first.

    Attributes:
        strategy: the strategy that ranked them.
        index: positions in the pool (B,), best first.
        score: each one's score (B,): higher means labelling it first.
        why: one reason per image, for the clinic.
    """

    strategy: str
    index: np.ndarray
    score: np.ndarray
    why: list[str]


@dataclass(frozen=True)
class Strategy:
    """One acquisition strategy and what it needs from the model."""

    name: str
    rank: Callable[[PoolScores, int, np.random.Generator], Ranking]
    needs_views: bool = False
    needs_embeddings: bool = False
    needs_threshold: bool = False
    description: str = ""


# ------------------------------------------------------------------------------------------ scores


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis; 0 log 0 is 0."""
    p = np.clip(probs, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): 1 when the two most likely classes tie."""
    top2 = np.sort(probs, axis=1)[:, -2:]  # (N, 2), ascending
    return 1.0 - (top2[:, 1] - top2[:, 0])


def boundary_closeness(p_melanoma: np.ndarray, threshold: float) -> np.ndarray:
    """1 at the threshold, falling linearly to 0 at the farther end of [0, 1]."""
    span = max(threshold, 1.0 - threshold)
    return 1.0 - np.abs(p_melanoma - threshold) / span


def bald_score(view_probs: np.ndarray) -> np.ndarray:
    """Mutual information H[mean_v p_v] - mean_v H[p_v] over views (V, N, K) -> (N,); >= 0."""
    return np.maximum(entropy(view_probs.mean(axis=0)) - entropy(view_probs).mean(axis=0), 0.0)


def _top(score: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    # Sort by score, ties in a seeded random order (np.lexsort: last key is primary).
    jitter = rng.permutation(len(score))
    return np.lexsort((jitter, -score))[:budget]


def _top_class(p: np.ndarray) -> str:
    k = np.argsort(p)[::-1]
    return f"{CLASSES[k[0]]} {p[k[0]]:.2f} vs {CLASSES[k[1]]} {p[k[1]]:.2f}"


# ------------------------------------------------------------------------------------------ strategies


def _random(pool: PoolScores, budget: int, rng: np.random.Generator) -> Ranking:
    score = rng.random(len(pool.names))
    idx = _top(score, budget, rng)
    return Ranking("random", idx, score[idx], ["random draw (the control)"] * len(idx))


def _entropy(pool: PoolScores, budget: int, rng: np.random.Generator) -> Ranking:
    score = entropy(pool.probs)
    idx = _top(score, budget, rng)
    why = [
        f"class entropy {score[i]:.2f} nats (max {np.log(pool.probs.shape[1]):.2f}): {_top_class(pool.probs[i])}"
        for i in idx
    ]
    return Ranking("entropy", idx, score[idx], why)


def _margin(pool: PoolScores, budget: int, rng: np.random.Generator) -> Ranking:
    score = margin_uncertainty(pool.probs)
    idx = _top(score, budget, rng)
    why = [f"top-two margin {1 - score[i]:.2f}: {_top_class(pool.probs[i])}" for i in idx]
    return Ranking("margin", idx, score[idx], why)


def _melanoma_boundary(pool: PoolScores, budget: int, rng: np.random.Generator) -> Ranking:
    t = require_threshold(pool.threshold)
    p_mel = pool.probs[:, MELANOMA_INDEX]
    score = boundary_closeness(p_mel, t)
    idx = _top(score, budget, rng)
    why = [
        f"p(MEL) {p_mel[i]:.3f} is {abs(p_mel[i] - t):.3f} {'above' if p_mel[i] >= t else 'below'} the locked "
        f"threshold {t:.3f}: the label decides the flag"
        for i in idx
    ]
    return Ranking("melanoma-boundary", idx, score[idx], why)


def require_threshold(threshold: float | None) -> float:
    """The locked melanoma threshold, or the error that says how to lock one."""
    if threshold is None:
        raise ConfigError(
            "melanoma-boundary needs the run's locked melanoma threshold, and the run is uncalibrated: run "
            "`dermascan evaluate --run R` first (it writes operating_point.json), or pick another --strategy"
        )
    return float(threshold)


def _bald(pool: PoolScores, budget: int, rng: np.random.Generator) -> Ranking:
    if pool.view_probs is None or len(pool.view_probs) < 2:
        raise ValueError("bald needs view_probs from at least 2 stochastic views (V, N, K)")
    score = bald_score(pool.view_probs)
    idx = _top(score, budget, rng)
    views = len(pool.view_probs)
    why = [f"{views} flipped views disagree: mutual information {score[i]:.3f} nats" for i in idx]
    return Ranking("bald", idx, score[idx], why)


def _kcenter(pool: PoolScores, budget: int, rng: np.random.Generator) -> Ranking:
    if pool.embeddings is None:
        raise ValueError("kcenter needs embeddings (N, D)")
    # Unit-normalised features: the distance then measures direction, not the activation scale that
    # differs between checkpoints and rounds.
    x = _unit(pool.embeddings)  # (N, D)
    n = len(x)
    budget = min(budget, n)
    picked: list[int] = []
    score: list[float] = []
    labelled = pool.labelled_embeddings
    if labelled is not None and len(labelled):
        nearest = np.full(n, np.inf)  # (N,) distance of each image to its nearest labelled or picked one
        for start in range(0, len(labelled), 1024):  # (N, chunk) distances at a time: memory stays bounded
            nearest = np.minimum(nearest, _distances(x, _unit(labelled[start : start + 1024])).min(axis=1))
        anchor = "labelled or picked"
    else:
        # Nothing labelled yet: start from the image nearest the pool's centre (a typical one, deterministic).
        first = int(np.argmin(_distances(x, x.mean(axis=0, keepdims=True))[:, 0]))
        picked.append(first)
        score.append(float("nan"))
        nearest = _distances(x, x[first : first + 1])[:, 0]
        anchor = "picked"
    while len(picked) < budget:
        nearest[picked] = -np.inf
        i = int(np.argmax(nearest + rng.random(n) * 1e-12))  # the jitter only breaks exact ties
        picked.append(i)
        score.append(float(nearest[i]))
        nearest = np.minimum(nearest, _distances(x, x[i : i + 1])[:, 0])
    idx = np.asarray(picked, dtype=np.int64)
    why = [
        f"its nearest {anchor} image is {s:.3f} away (unit embeddings)"
        if np.isfinite(s)
        else "first pick: the most typical image"
        for s in score
    ]
    return Ranking("kcenter", idx, np.asarray(score, dtype=np.float64), why)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) between rows of a (N, D) and b (M, D)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("random", _random, description="uniform random draw: the control"),
        Strategy("entropy", _entropy, description="entropy of the 7-class probabilities"),
        Strategy("margin", _margin, description="small gap between the two most likely classes"),
        Strategy(
            "melanoma-boundary",
            _melanoma_boundary,
            needs_threshold=True,
            description="p(melanoma) close to the locked threshold: the label moves the clinical decision",
        ),
        Strategy("bald", _bald, needs_views=True, description="BALD: disagreement between test-time flipped views"),
        Strategy("kcenter", _kcenter, needs_embeddings=True, description="k-center greedy on the model's embeddings"),
    )
}


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; a :class:`ConfigError` listing the valid names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


def rank(pool: PoolScores, strategy: str, budget: int, seed: int = 0) -> Ranking:
    """The ``budget`` images of ``pool`` to label first by ``strategy`` (all of them when the pool is smaller).

    Raises:
        ConfigError: unknown strategy, a budget below 1, or a strategy whose inputs are missing.
    """
    chosen = get_strategy(strategy)
    if not isinstance(budget, int | np.integer) or budget < 1:
        raise ConfigError(f"budget must be a positive number of images, got {budget!r}")
    if not pool.names:
        raise ConfigError("the pool is empty: there is nothing to rank")
    return chosen.rank(pool, int(min(budget, len(pool.names))), np.random.default_rng(seed))


__all__ = [
    "STRATEGIES",
    "PoolScores",
    "Ranking",
    "Strategy",
    "bald_score",
    "boundary_closeness",
    "entropy",
    "get_strategy",
    "margin_uncertainty",
    "rank",
    "require_threshold",
]
