"""What a model says about a pool, through the one inference path: probabilities, flipped views, embeddings.

Images are decoded and preprocessed by the :class:`~dermascan.inference.Predictor` and run on its runtime;
the embeddings come from a forward pre-hook on the model's named classifier layer (its input is the pooled
feature vector), so ``forward`` is never edited and no second inference path exists.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from dermascan.active_learning.strategies import PoolScores
from dermascan.inference import Predictor
from dermascan.inference.results import ImageInput
from dermascan.models import model_info
from dermascan.runs import Run


@dataclass(frozen=True)
class Scorer:
    """A run's model, ready to score pools.

    Attributes:
        predictor: the Predictor around the run's model (torch runtime: the hook needs the live module).
        model: that live module.
        classifier: dotted name of its final Linear layer, whose input is the embedding.
        threshold: the run's locked melanoma threshold (``None`` while uncalibrated).
    """

    predictor: Predictor
    model: nn.Module
    classifier: str
    threshold: float | None

    @classmethod
    def from_run(cls, run: Run, batch_size: int = 64, quiet: bool = False) -> Scorer:
        """The scorer of a loaded run (``load_run(path)``) with the run's temperature and locked threshold."""
        from dermascan.decision import UncalibratedWarning

        with warnings.catch_warnings():
            if quiet:  # a simulation round has no operating point by design: the warning would be noise
                warnings.simplefilter("ignore", UncalibratedWarning)
            policy = run.policy()
        predictor = Predictor.from_model(run.loaded, policy, runtime="torch", batch_size=batch_size)
        classifier = model_info(run.loaded.arch)["classifier"]
        return cls(predictor, run.loaded.model, classifier, policy.threshold)

    def score(
        self,
        images: Sequence[ImageInput],
        names: Sequence[str],
        views: bool = False,
        embeddings: bool = False,
        labelled: Sequence[ImageInput] = (),
    ) -> tuple[PoolScores, list[tuple[str, str]]]:
        """Score ``images``: probabilities always; flipped views for BALD and embeddings for k-center on demand.

        Args:
            images: the pool's images (paths, bytes, ...).
            names: one name per image.
            views: also compute the four flipped views' probabilities (V=4, N, K).
            embeddings: also capture the embeddings (N, D), and those of ``labelled``.
            labelled: images already labelled (k-center measures distances to them).

        Returns:
            ``(scores, skipped)``: scores of the images that decoded; ``(name, error)`` of those that did not.
        """
        probs, view_probs, feats, kept, skipped = self._run(images, names, views, embeddings)
        known = None
        if embeddings and len(labelled):
            known = self._run(labelled, [f"labelled-{i}" for i in range(len(labelled))], False, True)[2]
        return PoolScores(kept, probs, view_probs, feats, known, self.threshold), skipped

    def _run(
        self, images: Sequence[ImageInput], names: Sequence[str], views: bool, embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, list[str], list[tuple[str, str]]]:
        p = self.predictor
        k = len(p.card.classes)
        probs, flips, feats, kept, skipped = [], [], [], [], []
        for start in range(0, len(images), p.batch_size):
            stop = start + p.batch_size
            batch = [p.prepare(img, name) for img, name in zip(images[start:stop], names[start:stop], strict=True)]
            skipped += [(b.name, str(b.error)) for b in batch if b.error is not None]
            good = [b for b in batch if b.error is None]
            if not good:
                continue
            kept += [b.name for b in good]
            x = np.stack([b.x for b in good])  # (B, 3, S, S)
            with self._embeddings(embeddings) as captured:
                logits = p.infer(x).logits  # (B, K)
            probs.append(p.probabilities(logits))
            if embeddings:
                feats.append(np.concatenate(captured))  # (B, D)
            if views:
                flipped = [x[..., ::-1], x[..., ::-1, :], x[..., ::-1, ::-1]]  # the Predictor's TTA flips
                flips.append(
                    np.stack([probs[-1]] + [p.probabilities(p.infer(np.ascontiguousarray(v))[0]) for v in flipped])
                )  # (V, B, K)
        empty = np.zeros((0, k))
        return (
            np.concatenate(probs) if probs else empty,
            (np.concatenate(flips, axis=1) if flips else np.zeros((4, 0, k))) if views else None,
            (np.concatenate(feats) if feats else np.zeros((0, 0))) if embeddings else None,
            kept,
            skipped,
        )

    @contextlib.contextmanager
    def _embeddings(self, on: bool) -> Iterator[list[np.ndarray]]:
        captured: list[np.ndarray] = []
        if not on:
            yield captured
            return

        def keep(_module: nn.Module, args: tuple) -> None:
            captured.append(args[0].detach().float().cpu().numpy())  # (B, D): the classifier's input

        handle = self.model.get_submodule(self.classifier).register_forward_pre_hook(keep)
        try:
            yield captured
        finally:
            handle.remove()


__all__ = ["Scorer"]
