"""Export a trained run to a deployable bundle, check it against the eager model, and benchmark it.

``export_bundle(run, out, fmt="onnx"|"torchscript", precision="fp32"|"fp16"|"bf16"|"int8")`` writes a bundle
(:mod:`dermascan.inference.bundle`): the model file, the state dict (``weights.safetensors``, for the
PyTorch runtimes) and ``manifest.json``. Before the bundle appears at ``out`` it is loaded the way a
deployment loads it (checksums verified, through the :class:`~dermascan.inference.Predictor`) on every
runtime present that would serve it, and compared with the eager model on the run's validation images
(:mod:`dermascan.export.parity`); the export fails with :class:`ExportParityError` when parity fails, and
nothing is left at ``out``.

What ``--precision`` means, per format and runtime:

=========  ==========================================  ==============================================
precision  ONNX (``model.onnx``)                       TorchScript (``model.ts``)
=========  ==========================================  ==============================================
fp32       fp32 graph. ONNX Runtime and OpenVINO       traced in fp32
           compute in fp32 (OpenVINO's precision hint
           is pinned to f32, never its silent bf16).
fp16       fp16 graph between float32 casts, for       traced after ``.half()`` between float32
           GPUs: ONNX Runtime's CUDA/TensorRT          casts; for CUDA (runs, slowly, on CPU too)
           providers. On a CPU, OpenVINO runs it in
           f32 with the fp16-rounded weights; ONNX
           Runtime's CPU provider is refused.
bf16       the fp32 graph (ONNX convolutions have no   traced after ``.to(bfloat16)`` between
           bf16 type); OpenVINO computes in bf16       float32 casts (oneDNN bf16 on CPUs with
           (native with AVX512_BF16 or AMX), ONNX      AVX512_BF16/AMX)
           Runtime in fp32.
int8       CNNs: the fp32 graph quantized after        refused (quantize an ONNX bundle)
           training (QDQ form, :mod:`dermascan.export.
           quantize`), calibrated on the run's
           training images; OpenVINO and ONNX Runtime
           run int8 kernels (AVX512-VNNI, AMX). ViTs
           are refused: their attention map does not
           survive int8 on OpenVINO.
=========  ==========================================  ==============================================

Parity criteria (:mod:`dermascan.export.parity`): fp32, probabilities within 1e-4 of the eager model;
fp16/bf16/int8, the primary diagnosis and the melanoma flag agree on at least 99.5% of the validation images
and 95% of the displayed heat maps are within 0.1. When all-int8 fails, the layers most sensitive to int8
(measured on held-out training images) are kept in float, 1, 2, 4, ... of them up to a quarter, until the
gate passes; the manifest's ``model.quantization`` names them. The PyTorch runtimes run an int8 bundle's
fp32 weights (``weights.safetensors``), in fp32.

This package imports torch only inside the functions that export; the benchmark worker
(``python -m dermascan.export.benchmark``) stays torch-free for the ONNX runtimes.
"""

from __future__ import annotations

from typing import Any

from dermascan.export.check import check_bundle_parity, parity_runtimes_for, split_images
from dermascan.export.exporter import export_bundle
from dermascan.export.parity import ExportParityError, ParityReport
from dermascan.export.quantize import QuantizationError


def run_benchmark(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`dermascan.export.benchmark.run_benchmark` (imported lazily: it is torch-free)."""
    from dermascan.export.benchmark import run_benchmark as _run

    return _run(*args, **kwargs)


__all__ = [
    "ExportParityError",
    "ParityReport",
    "QuantizationError",
    "check_bundle_parity",
    "export_bundle",
    "parity_runtimes_for",
    "run_benchmark",
    "split_images",
]
