"""Post-training INT8 quantization of an exported ONNX graph, calibrated on the run's own images.

ONNX Runtime's static quantizer writes the graph in QDQ form (QuantizeLinear/DequantizeLinear pairs around
each quantized operator): weights int8, symmetric, one scale per output channel; activations uint8 with a
scale and zero point fitted to the ranges seen on the calibration images. Both CPU runtimes execute a QDQ
graph with integer kernels (OpenVINO fuses the pairs into int8 convolutions and matrix products, which
AVX512-VNNI and AMX run natively; ONNX Runtime does the same on its CPU provider), and a runtime that does
not understand the pairs still computes the right thing in float.

Why INT8 at all: on a 2-core CPU without AMX, OpenVINO's bf16 ResNet-50 takes ~11 ms per image and int8
~6.5 ms (``benchmarks/bench_latency.py``). Static, not dynamic, quantization: ONNX Runtime's dynamic mode
turns convolutions into ``ConvInteger`` and made ResNet-50 5x *slower* (PERFORMANCE.md). The price is
accuracy, which is why an int8 bundle passes the same gate as fp16/bf16 ones: the primary diagnosis and the
melanoma flag must agree with the eager fp32 model on at least 99.5% of the validation images and the heat
maps must stay close, or the export fails (:mod:`dermascan.export.parity`).

Calibration images should resemble what the model will see and must not be the parity images (the gate
would then be checked on the data the ranges were fitted to): the default is the run's *training* split.

Mixed precision (``keep_float_ends``): the first convolution (it sees the raw image, whose fine contrasts
uint8 activations flatten) and the convolutions of the last stage (they decide the class) are the most
sensitive to quantization. Measured on the demo's trained ResNet-18s (2,406 validation images): all-int8
kept 99.2-99.3% of the decisions; for the plain-CE model, either end in float alone 99.3-99.4% and both
99.5-99.6% (passing the gate on ONNX Runtime and OpenVINO); the two focal-loss models stayed at 99.3% and
are refused. :func:`dermascan.export.export_bundle` tries all-int8 first and this second.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dermascan.errors import DermaScanError

log = logging.getLogger(__name__)

#: Calibration images used by default: enough for stable activation ranges, seconds of work on a CPU.
DEFAULT_CALIBRATION_IMAGES = 64


class QuantizationError(DermaScanError, RuntimeError):
    """The graph could not be quantized (no calibration data, or the quantizer failed)."""


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    input_name: str = "image",
    keep_float_ends: bool = False,
) -> Path:
    """Write the INT8 (QDQ) version of an fp32 ONNX graph.

    Args:
        fp32_path: the fp32 ``.onnx`` file (unchanged).
        out_path: the quantized ``.onnx`` file to write.
        calibration: preprocessed float32 images, each (3, S, S) or a batch (B, 3, S, S).
        input_name: the graph's input.
        keep_float_ends: leave the first convolution and the last stage's in float (see the module docs).

    Returns:
        ``out_path``.

    Raises:
        QuantizationError: no calibration images, or the quantizer failed (its message included).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [
        np.asarray(x, np.float32)[None] if np.ndim(x) == 3 else np.asarray(x, np.float32) for x in calibration
    ]  # each (B, 3, S, S)
    if not batches:
        raise QuantizationError("no calibration images: pass a few hundred training images (--calibration-images)")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    out = Path(out_path)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        # Shape inference and graph simplification first (ORT's recommended step): the quantizer then sees
        # fused Conv+BatchNorm and known shapes, and quantizes more of the graph.
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            keep = float_ends(pre) if keep_float_ends else []
            quantize_static(
                str(pre),
                str(Path(tmp) / "int8.onnx"),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        except Exception as e:  # the quantizer's own errors are varied; name the step that failed
            raise QuantizationError(f"INT8 quantization of {fp32_path} failed: {type(e).__name__}: {e}") from e
        shutil.move(str(Path(tmp) / "int8.onnx"), out)
    log.info("quantized %s to INT8 on %d calibration batch(es)", fp32_path, len(batches))
    return out


def float_ends(path: str | os.PathLike[str]) -> list[str]:
    """Names of the first convolution and of the convolutions at the graph's final resolution (the last
    stage of a CNN), from a shape-inferred graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    spatial = {
        v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim[2:])
        for v in graph.value_info
        if len(v.type.tensor_type.shape.dim) == 4
    }
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if not convs:
        return []
    sizes = [spatial.get(n.output[0]) for n in convs]
    known = [sz for sz in sizes if sz and all(sz)]
    last = min(known, key=lambda sz: sz[0] * sz[1]) if known else None
    return sorted({convs[0].name} | {n.name for n, sz in zip(convs, sizes, strict=True) if sz == last})


__all__ = ["DEFAULT_CALIBRATION_IMAGES", "QuantizationError", "float_ends", "quantize_onnx"]
