"""Scoring an archive: one bundle over every image of a folder or object store, into a Parquet file.

* :func:`score` - the entry point (``dermascan score``): ``engine="local"`` (one process, the reference) or
  ``engine="ray"`` (Ray Data: decode tasks ahead of a pool of model actors, a local cluster or one to join).
* :mod:`~dermascan.scoring.batch` - the two per-batch steps both engines run: decode (the Predictor's own
  decode and preprocessing) and score (its runtime, calibration and decision rule).
* :mod:`~dermascan.scoring.output` - the resumable Parquet output (parts, then one merged file).
* :mod:`~dermascan.scoring.sources` - listing and reading images through fsspec.

Ray is imported only by the Ray engine. See docs/scoring.md for running on a cluster and sizing actors.
"""

from dermascan.scoring.batch import decode_batch, output_schema, score_batch
from dermascan.scoring.score import ENGINES, ScoreSummary, score
from dermascan.scoring.sources import ImageRef, ScoringError, list_images

__all__ = [
    "ENGINES",
    "ImageRef",
    "ScoreSummary",
    "ScoringError",
    "decode_batch",
    "list_images",
    "output_schema",
    "score",
    "score_batch",
]
