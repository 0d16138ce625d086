from __future__ import annotations

import numpy as np
import pytest

from dermascan.data.sampling import BalancedSampler, class_counts, class_weights


def test_inverse_weights_follow_the_brief_formula() -> None:
    counts = np.array([10, 20, 70])
    w = class_weights(counts, "inverse")
    np.testing.assert_allclose(w, [100 / 30, 100 / 60, 100 / 210])
    # w_i * N_i is the same for every class: each class carries equal total weight.
    np.testing.assert_allclose(w * counts, [100 / 3] * 3)


def test_gentler_schemes() -> None:
    counts = np.array([10, 20, 70])
    sqrt = class_weights(counts, "sqrt_inverse")
    assert sqrt.mean() == pytest.approx(1.0) and sqrt[0] / sqrt[2] == pytest.approx(np.sqrt(7))
    assert class_weights(counts, "clipped", clip=2.0).max() == 2.0
    np.testing.assert_array_equal(class_weights(counts, "uniform"), [1, 1, 1])


def test_absent_class_gets_zero_with_warning_and_bad_input_raises() -> None:
    with pytest.warns(UserWarning, match="no training samples"):
        w = class_weights(np.array([5, 0, 5, 1, 1, 1, 1]))
    assert w[1] == 0
    with pytest.raises(ValueError, match="scheme"):
        class_weights([1, 2], "log")
    with pytest.raises(ValueError, match="labels must be in"):
        class_counts([0, 9])


def test_balanced_sampler_balances_classes() -> None:
    labels = np.array([0] * 50 + [1] * 900 + [2] * 50)
    sampler = BalancedSampler(labels, num_samples=30000, seed=0)
    drawn = labels[list(sampler)]
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.02)


def test_balanced_sampler_shards_differ_and_are_reproducible() -> None:
    labels = np.arange(400) % 4
    ranks = [BalancedSampler(labels, seed=1, rank=r, world_size=2) for r in range(2)]
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 200 and a != b
    assert a == list(BalancedSampler(labels, seed=1, rank=0, world_size=2))
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != a  # a new epoch draws anew
