"""Each strategy's ranking on constructed pools: what it must put first, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from dermascan.active_learning.strategies import STRATEGIES, PoolScores, bald_score, entropy, rank
from dermascan.errors import ConfigError
from dermascan.taxonomy import MELANOMA_INDEX, NUM_CLASSES


def _probs(p_mel: list[float]) -> np.ndarray:
    """(N, K) rows with the given p(MEL), the rest on NV."""
    p = np.zeros((len(p_mel), NUM_CLASSES))
    p[:, MELANOMA_INDEX] = p_mel
    p[:, 1] = 1.0 - np.asarray(p_mel)
    return p


def _pool(probs: np.ndarray, **kw) -> PoolScores:
    return PoolScores([f"img{i}" for i in range(len(probs))], probs, **kw)


def test_entropy_and_margin_put_the_undecided_first() -> None:
    confident = np.eye(NUM_CLASSES)[[1, 2, 3]] * 0.97 + 0.03 / NUM_CLASSES
    tie = np.full((1, NUM_CLASSES), 0.0)
    tie[0, [0, 1]] = 0.5  # MEL vs NV, a coin toss
    uniform = np.full((1, NUM_CLASSES), 1.0 / NUM_CLASSES)
    probs = np.concatenate([confident[:2], tie, confident[2:], uniform])  # tie at 2, uniform at 4
    by_entropy = rank(_pool(probs), "entropy", 5)
    assert by_entropy.index[:2].tolist() == [4, 2]  # uniform is the most uncertain over 7 classes
    assert np.isclose(by_entropy.score[0], np.log(NUM_CLASSES))
    by_margin = rank(_pool(probs), "margin", 5)
    assert set(by_margin.index[:2].tolist()) == {2, 4}  # both have a zero top-two gap
    assert np.allclose(by_margin.score[:2], 1.0)
    assert "MEL 0.50 vs NV 0.50" in by_margin.why[by_margin.index.tolist().index(2)]


def test_melanoma_boundary_ranks_by_distance_to_the_locked_threshold() -> None:
    p_mel = [0.01, 0.95, 0.29, 0.6, 0.33, 0.30]
    ranking = rank(_pool(_probs(p_mel), threshold=0.3), "melanoma-boundary", 6)
    assert ranking.index.tolist() == [5, 2, 4, 0, 3, 1]  # |p - t|: 0, .01, .03, .29, .30, .65
    assert ranking.score[0] == pytest.approx(1.0)
    assert np.all(np.diff(ranking.score) <= 0)
    assert "below the locked threshold 0.300" in ranking.why[1]
    # Another threshold, another order: the decision boundary, not p = 0.5, matters.
    assert rank(_pool(_probs(p_mel), threshold=0.9), "melanoma-boundary", 1).index.tolist() == [1]


def test_bald_prefers_disagreeing_views_over_uniformly_unsure_ones() -> None:
    n = 3
    views = np.tile(np.full((1, n, NUM_CLASSES), 1.0 / NUM_CLASSES), (4, 1, 1))  # every view unsure of all 3
    # Image 1: each view is confident, but they disagree (MEL, NV, MEL, NV): high mutual information.
    views[:, 1] = np.eye(NUM_CLASSES)[[0, 1, 0, 1]] * 0.96 + 0.04 / NUM_CLASSES
    # Image 2: every view confidently NV: no information in a label.
    views[:, 2] = np.eye(NUM_CLASSES)[1] * 0.96 + 0.04 / NUM_CLASSES
    pool = _pool(views.mean(axis=0), view_probs=views)
    ranking = rank(pool, "bald", 3)
    assert ranking.index[0] == 1
    scores = bald_score(views)
    assert scores[0] == pytest.approx(0.0, abs=1e-12)  # uniform in every view: entropy high, information none
    assert entropy(views.mean(axis=0))[0] > entropy(views.mean(axis=0))[1]  # entropy would have picked image 0


def _clusters(rng: np.random.Generator, sizes=(40, 5, 3)) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.3, (s, 3)) for c, s in zip(centres, sizes, strict=True)])
    return x, np.repeat(np.arange(3), sizes)


def test_kcenter_spreads_over_clusters() -> None:
    rng = np.random.default_rng(0)
    x, cluster = _clusters(rng)
    probs = _probs([0.5] * len(x))  # uncertainty alone cannot tell them apart
    ranking = rank(_pool(probs, embeddings=x), "kcenter", 3)
    assert sorted(cluster[ranking.index].tolist()) == [0, 1, 2]  # one per cluster, even the 3-image one
    # Entropy would take three of the big cluster's ties first (random among equals): most likely not all three.
    # With the big cluster already labelled, the two picks are the other clusters.
    labelled = x[cluster == 0][:5]
    ranking = rank(_pool(probs, embeddings=x, labelled_embeddings=labelled), "kcenter", 2)
    assert sorted(cluster[ranking.index].tolist()) == [1, 2]
    assert np.all(np.isfinite(ranking.score)) and "labelled or picked" in ranking.why[0]


def test_random_is_seeded_and_a_permutation() -> None:
    pool = _pool(_probs(np.linspace(0, 1, 50).tolist()))
    a, b, c = (rank(pool, "random", 50, seed=s) for s in (1, 1, 2))
    assert a.index.tolist() == b.index.tolist() != c.index.tolist()
    assert sorted(a.index.tolist()) == list(range(50))


def test_budget_larger_than_the_pool_ranks_all_of_it() -> None:
    for name in ("entropy", "margin", "random"):
        assert len(rank(_pool(_probs([0.2, 0.4, 0.6])), name, 10).index) == 3


@pytest.mark.parametrize(
    ("pool", "strategy", "budget", "message"),
    [
        (_pool(_probs([0.5])), "uncertainty", 1, "unknown strategy 'uncertainty'; choose one of random"),
        (_pool(_probs([0.5])), "entropy", 0, "budget must be a positive"),
        (_pool(_probs([0.5])), "melanoma-boundary", 1, "run `dermascan evaluate --run R` first"),
        (_pool(_probs([0.5])), "bald", 1, "bald needs view_probs"),
        (_pool(_probs([0.5])), "kcenter", 1, "kcenter needs embeddings"),
        (PoolScores([], np.zeros((0, NUM_CLASSES))), "entropy", 1, "the pool is empty"),
    ],
)
def test_bad_input_is_named(pool: PoolScores, strategy: str, budget: int, message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=message.replace("(", r"\(").replace("`", ".")):
        rank(pool, strategy, budget)


def test_pool_scores_check_shapes() -> None:
    with pytest.raises(ValueError, match="probs must be"):
        PoolScores(["a", "b"], np.zeros((3, NUM_CLASSES)))
    with pytest.raises(ValueError, match="embeddings must be"):
        PoolScores(["a"], np.zeros((1, NUM_CLASSES)), embeddings=np.zeros((2, 4)))


def test_every_strategy_is_listed_once() -> None:
    assert list(STRATEGIES) == ["random", "entropy", "margin", "melanoma-boundary", "bald", "kcenter"]
