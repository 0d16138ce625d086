"""Active learning: which images to label (send for histopathology) next, and what that measurably saves.

* :mod:`~.strategies` - the acquisition strategies (random, entropy, margin, melanoma-boundary, BALD,
  k-center greedy), pure numpy;
* :mod:`~.features` - a run's model scoring a pool through the Predictor (probabilities, flipped views,
  embeddings);
* :mod:`~.pool` - the pool: an image folder or the store's predictions awaiting a biopsy;
* :mod:`~.ranking` - ``dermascan active-learn rank``;
* :mod:`~.simulate` and :mod:`~.report` - ``dermascan active-learn simulate``: labelling rounds on a labelled
  set, learning curves per strategy, the labels and dollars saved against random, with an interval.

The cost model that reads the measured saving is :mod:`dermascan.cost`.
"""

from dermascan.active_learning.strategies import STRATEGIES, PoolScores, Ranking, rank

__all__ = ["STRATEGIES", "PoolScores", "Ranking", "rank"]
