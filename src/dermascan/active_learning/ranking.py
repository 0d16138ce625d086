"""``dermascan active-learn rank``: which images of a pool to label (send for histopathology) first."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dermascan import _io
from dermascan.active_learning.features import Scorer
from dermascan.active_learning.pool import Pool, open_pool
from dermascan.active_learning.strategies import get_strategy, rank, require_threshold
from dermascan.errors import ConfigError
from dermascan.runs import load_run
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

RANKING_COLUMNS = ["rank", "image", "score", "why", "p_melanoma", "predicted"]


def rank_pool(
    run: str | os.PathLike[str],
    pool: str | os.PathLike[str] | Pool,
    budget: int,
    strategy: str,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, Pool]:
    """Rank a pool with a run's model: the ``budget`` images whose label would help most, best first.

    Args:
        run: run folder (its ``best.ckpt`` and, for ``melanoma-boundary``, its ``operating_point.json``).
        pool: image folder, database URL / ``.db`` file (predictions awaiting histopathology), or a :class:`Pool`.
        budget: how many images to rank.
        strategy: one of :data:`~dermascan.active_learning.strategies.STRATEGIES`.
        out: write the ranking there as CSV (atomically).
        seed: seeds ``random`` and the tie-breaks.

    Returns:
        ``(ranking, pool)``: one row per ranked image (``rank, image, score, why, p_melanoma, predicted`` and
        ``clinic`` for a store pool); the pool with what it skipped.

    Raises:
        ConfigError: bad strategy or budget, an empty pool, or ``melanoma-boundary`` on an uncalibrated run.
    """
    spec = get_strategy(strategy)
    if not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"--budget must be a positive number of images, got {budget!r}")
    scorer = Scorer.from_run(load_run(run), quiet=not spec.needs_threshold)
    if spec.needs_threshold:
        require_threshold(scorer.threshold)  # before scoring the whole pool
    found = pool if isinstance(pool, Pool) else open_pool(pool)
    scores, skipped = scorer.score(found.images, found.names, views=spec.needs_views, embeddings=spec.needs_embeddings)
    found.skipped += skipped
    if not scores.names:
        raise ConfigError(f"no image of the pool {found.source} could be read, e.g. {skipped[0][0]}: {skipped[0][1]}")
    ranking = rank(scores, strategy, budget, seed=seed)
    probs = scores.probs[ranking.index]
    frame = pd.DataFrame(
        {
            "rank": range(1, len(ranking.index) + 1),
            "image": [scores.names[i] for i in ranking.index],
            "score": ranking.score,
            "why": ranking.why,
            "p_melanoma": probs[:, MELANOMA_INDEX],
            "predicted": [CLASSES[k] for k in probs.argmax(axis=1)],
        }
    )
    if found.clinics is not None:
        clinic_of = dict(zip(found.names, found.clinics, strict=True))
        frame["clinic"] = frame["image"].map(clinic_of)
    if out is not None:
        _io.write_csv(Path(out), frame, index=False)
    return frame, found


__all__ = ["RANKING_COLUMNS", "rank_pool"]
