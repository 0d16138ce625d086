"""Inference: one :class:`Predictor` for every path (CLI, HTTP service, export parity, benchmarks).

* :class:`Predictor` - ``Predictor.from_path(bundle | run | checkpoint, runtime="auto")``, then ``predict`` or
  ``predict_paths``; results are :class:`Prediction` / :class:`PredictionError`.
* :mod:`~dermascan.inference.bundle` - the deployable bundle: manifest, checksums, :func:`load_bundle`.
* :mod:`~dermascan.data.preprocess` (re-exported here) - the eval transform in numpy/PIL (no torch).
* :mod:`~dermascan.inference.runtimes` - ONNX Runtime, OpenVINO and PyTorch backends.

Importing this package does not import torch; only the PyTorch runtimes do, when they are used.
"""

from dermascan.data.io import ImageError, capture_size, load_image
from dermascan.data.preprocess import preprocess
from dermascan.decision import UncalibratedWarning
from dermascan.inference.bundle import (
    Bundle,
    BundleError,
    DecisionPolicy,
    ModelCard,
    load_bundle,
    verify_bundle,
)
from dermascan.inference.inputs import prepare_image
from dermascan.inference.predictor import ImageInput, Prediction, PredictionError, Predictor, Result, expand_paths
from dermascan.inference.runtimes import RUNTIMES, RuntimeUnavailableError, available_runtimes, choose_runtime

__all__ = [
    "RUNTIMES",
    "Bundle",
    "BundleError",
    "DecisionPolicy",
    "ImageError",
    "ImageInput",
    "ModelCard",
    "Prediction",
    "PredictionError",
    "Predictor",
    "Result",
    "RuntimeUnavailableError",
    "UncalibratedWarning",
    "available_runtimes",
    "capture_size",
    "choose_runtime",
    "expand_paths",
    "load_bundle",
    "load_image",
    "prepare_image",
    "preprocess",
    "verify_bundle",
]
