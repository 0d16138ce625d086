"""Class balance: class weights for the loss and a class-balanced sampler that also works under DDP."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from dermascan.taxonomy import CLASSES, NUM_CLASSES

WEIGHTING_SCHEMES = ("inverse", "sqrt_inverse", "clipped", "uniform")


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_classes)


def class_weights(counts: Sequence[int] | np.ndarray, scheme: str = "inverse", clip: float = 5.0) -> np.ndarray:
    """Per-class weights from class counts.

    ``inverse`` is the brief's w_i = N / (K * N_i): every class contributes equally overall.
    ``sqrt_inverse`` is its square root, renormalised to mean 1: gentler on the rarest classes
    (inverse weights reach ~60x for DF on HAM10000). ``clipped`` is ``inverse`` capped at ``clip``.
    ``uniform`` is all ones (the baseline). A class absent from the counts gets weight 0 with a warning:
    it cannot be learned from this training set, and a weight would only divide by zero.
    """
    if scheme not in WEIGHTING_SCHEMES:
        raise ValueError(f"unknown weighting scheme {scheme!r}; choose one of {WEIGHTING_SCHEMES}")
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"counts must be a 1-D array of non-negative numbers, got {counts.tolist()}")
    if counts.sum() == 0:
        raise ValueError("class counts are all zero: no training labels")
    present = counts > 0
    if not present.all():
        absent = [CLASSES[i] if len(counts) == NUM_CLASSES else str(i) for i in np.flatnonzero(~present)]
        warnings.warn(f"no training samples for class(es) {absent}: their weight is 0", stacklevel=2)
    if scheme == "uniform":
        return present.astype(np.float64)
    k = present.sum()
    w = np.zeros_like(counts)
    w[present] = counts.sum() / (k * counts[present])
    if scheme == "sqrt_inverse":
        w[present] = np.sqrt(w[present])
        w[present] /= w[present].mean()
    elif scheme == "clipped":
        w = np.minimum(w, clip)
    return w


class _EpochShardSampler(Sampler[int]):
    """Shared plumbing: ``per_rank`` draws per epoch, an epoch counter, a generator seeded by (seed, epoch)."""

    def __init__(self, total: int, seed: int, rank: int, world_size: int, epoch: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, epoch
        self.per_rank = math.ceil(total / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)


class ShardedShuffleSampler(_EpochShardSampler):
    """A fresh permutation each epoch from ``(seed, epoch)``, split across ranks (padded to equal shards).

    Like :class:`torch.utils.data.DistributedSampler`, but the epoch can be set at construction, so a
    loader built for a resumed run starts in the right epoch before Lightning calls :meth:`set_epoch`.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, epoch: int = 0) -> None:
        super().__init__(n, seed, rank, world_size, epoch)
        self.n = n

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=self._generator())
        order = torch.cat([order, order[: self.per_rank * self.world_size - self.n]])  # pad to equal shards
        return iter(order[self.rank :: self.world_size].tolist())


class SeededSampler(Sampler[tuple[int, int]]):
    """Wrap a sampler so each draw carries its own augmentation seed: ``(index, seed)``.

    The seed depends only on (run seed, epoch, position in the epoch, rank), so random crops and flips
    are the same whether the run was interrupted and resumed or not, whatever the number of loader
    workers. :class:`dermascan.data.datasets.DermoscopyDataset` accepts such pairs.
    """

    def __init__(self, sampler: Sampler[int], seed: int) -> None:
        self.sampler, self.seed = sampler, seed

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = getattr(self.sampler, "epoch", 0)
        rank = getattr(self.sampler, "rank", 0)
        base = (self.seed * 1_000_003 + epoch * 7919 + rank * 104_729) * 1_000_033
        for pos, i in enumerate(self.sampler):
            yield i, (base + pos) % (2**62)


class BalancedSampler(_EpochShardSampler):
    """Draw indices with replacement so that each class is seen equally often, sharded across ranks.

    Every rank draws the same global sequence from ``(seed, epoch)`` and keeps every ``world_size``-th
    index starting at its rank, so ranks see different, equally balanced shards and a resumed run
    replays exactly the epoch it stopped in. Call :meth:`set_epoch` each epoch (Lightning does).

    Args:
        labels: class index of every training sample.
        num_samples: samples per epoch across all ranks (default: the dataset size).
        weights: per-class sampling weights (default: inverse frequency, i.e. balanced).
        rank: this process's rank; world_size: number of processes.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        num_samples: int | None = None,
        weights: np.ndarray | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        per_class = class_weights(class_counts(labels)) if weights is None else np.asarray(weights, float)
        self.sample_weights = torch.as_tensor(per_class[labels], dtype=torch.float64)
        self.num_samples = num_samples or len(labels)
        super().__init__(self.num_samples, seed, rank, world_size, epoch)

    def __iter__(self) -> Iterator[int]:
        g = self._generator()
        total = self.per_rank * self.world_size
        idx = torch.multinomial(self.sample_weights, total, replacement=True, generator=g)
        return iter(idx[self.rank :: self.world_size].tolist())
