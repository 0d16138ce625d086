"""Post-training INT8 quantization of an exported ONNX graph, calibrated on the run's own images, with the
layers that int8 would hurt most kept in float.

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

Accuracy-aware mixed precision. Which layers int8 hurts depends on the trained weights, not on where a
layer sits: a fixed recipe (the first convolution and the last stage in float) passed the gate for one of
the demo's three ResNet-18s and not for the two focal-loss ones. :class:`Int8Graph` simplifies and
calibrates the graph once and then writes it with any set of weighted nodes (``Conv``, ``Gemm``,
``MatMul``) kept in float; :func:`layer_sensitivity` measures, for each such node, how much of the
quantized graph's output error goes away when that node alone stays in float, on held-out *training*
images (never the parity images); :func:`float_ladder` turns the ranking into the rungs that
:func:`dermascan.export.export_bundle` tries after all-int8 fails: the 1, 2, 4, ... most sensitive nodes in
float, up to a quarter of the weighted nodes (:data:`MAX_FLOAT_FRACTION`), beyond which int8 would keep too
little of its speed and the export is refused. A node "in float" keeps its fp32 weights and computes in
fp32; its input is still the quantized tensor its producer writes. ONNX Runtime would re-quantize such a
node's weights at load time (its ``WeightBiasQuantization`` pass), so an int8 bundle's session runs without
that pass (:class:`~dermascan.inference.backends.OnnxRuntimeBackend`); OpenVINO keeps them in float as is.

Measured on the demo's three trained ResNet-18s (64 px, 2,406 validation images): all-int8 kept 98.6-99.5%
of the primary diagnoses and failed the gate for each; the ladder passed all three, with the stem
convolution alone (``cnn_ce``), with the stem and the classifier (``cnn_focal_inverse``) and with 4 layers
(``cnn_focal_sqrt``), where the fixed recipe it replaced (stem and last stage, 6 layers) passed the first
only. The ranking took ~10 s and each graph after it ~3 s of a 31-36 s export on 2 cores (README).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dermascan.errors import DermaScanError

log = logging.getLogger(__name__)

#: Calibration images used by default: enough for stable activation ranges, seconds of work on a CPU.
DEFAULT_CALIBRATION_IMAGES = 64
#: Held-out training images the sensitivity of each layer is measured on.
DEFAULT_SENSITIVITY_IMAGES = 128
#: The most of a graph's weighted nodes the ladder keeps in float before it refuses int8.
MAX_FLOAT_FRACTION = 0.25
#: Operators that carry the weights: the nodes the ladder may keep in float.
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")

# The quantizer's settings, one place for every graph written (see the module docstring).
_QUANTIZER_OPTIONS = {"WeightSymmetric": True, "ActivationSymmetric": False}


class QuantizationError(DermaScanError, RuntimeError):
    """The graph could not be quantized (no calibration data, or the quantizer failed)."""


class Int8Graph:
    """An fp32 ONNX graph prepared for INT8 once, then written with any of its weighted nodes in float.

    Preparing runs ONNX Runtime's pre-processing (shape inference and graph simplification: the quantizer then
    sees fused Conv+BatchNorm and known shapes) and the calibration pass; the activation ranges do not depend
    on which nodes stay in float, so they are cached and every later :meth:`write` is a quantizer pass alone
    (0.3 s for a ResNet-18, against 1.1 s with calibration).

    Attributes:
        fp32_path: the simplified fp32 graph (what sensitivity compares with).
        nodes: names of the weighted nodes the quantizer turned int8, in graph order.
        weights: each of ``nodes``' weight initializer, for people reading a manifest (``node_Conv_294`` is
            ``model.conv1.weight``).
    """

    def __init__(
        self,
        fp32_path: str | os.PathLike[str],
        calibration: Sequence[np.ndarray],
        workdir: str | os.PathLike[str],
        input_name: str = "image",
    ) -> None:
        """Simplify and calibrate ``fp32_path`` into ``workdir`` (which must outlive this object).

        Args:
            fp32_path: the fp32 ``.onnx`` file (unchanged).
            calibration: preprocessed float32 images, each (3, S, S) or a batch (B, 3, S, S).
            workdir: a folder for the simplified graph, the calibration cache and the all-int8 graph.
            input_name: the graph's input.

        Raises:
            QuantizationError: no calibration images, or the quantizer failed (its message included).
        """
        import onnx
        from onnxruntime.quantization import CalibrationDataReader
        from onnxruntime.quantization.shape_inference import quant_pre_process

        batches = _as_batches(calibration)
        if not batches:
            raise QuantizationError("no calibration images: pass a few hundred training images (--calibration-images)")

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it: Iterator[np.ndarray] = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                x = next(self._it, None)
                return None if x is None else {input_name: x}

        work = Path(workdir)
        self.source = Path(fp32_path)
        self.fp32_path = work / "pre.onnx"
        self.input_name = input_name
        self.n_calibration = sum(len(b) for b in batches)
        self._cache = work / "calibration.json"
        self._all_int8 = work / "int8.onnx"
        self._cache.unlink(missing_ok=True)  # ranges of another graph must never be reused
        try:
            quant_pre_process(str(fp32_path), str(self.fp32_path), skip_symbolic_shape=True)
        except Exception as e:  # the pre-processor's own errors are varied; name the step that failed
            raise QuantizationError(f"INT8 pre-processing of {fp32_path} failed: {type(e).__name__}: {e}") from e
        self._quantize(self._all_int8, (), _Reader())
        graph = onnx.load(str(self._all_int8), load_external_data=False).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        quantized = [n for n in graph.node if n.op_type in WEIGHTED_OPS and set(n.input[:2]) <= dequantized]
        self.nodes = [n.name for n in quantized]
        self.weights = {n.name: n.input[1].removesuffix("_DequantizeLinear_Output") for n in quantized}
        log.info(
            "INT8: %s calibrated on %d image(s); %d weighted nodes quantized",
            fp32_path,
            self.n_calibration,
            len(self.nodes),
        )

    def write(self, out_path: str | os.PathLike[str], float_nodes: Sequence[str] = ()) -> Path:
        """Write the INT8 (QDQ) graph with ``float_nodes`` left in float.

        Raises:
            ValueError: a name in ``float_nodes`` is not one of :attr:`nodes`.
            QuantizationError: the quantizer failed.
        """
        unknown = sorted(set(float_nodes) - set(self.nodes))
        if unknown:
            raise ValueError(f"not quantized weighted nodes of {self.source}: {unknown}; choose among {self.nodes}")
        out = Path(out_path)
        if not float_nodes:
            out.write_bytes(self._all_int8.read_bytes())
        else:
            self._quantize(out, float_nodes, None)
        return out

    def _quantize(self, out: Path, float_nodes: Sequence[str], reader: object | None) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        try:
            quantize_static(
                str(self.fp32_path),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=list(float_nodes),
                extra_options=dict(_QUANTIZER_OPTIONS),
                calibration_cache_path=self._cache,
            )
        except Exception as e:  # the quantizer's own errors are varied; name the step that failed
            raise QuantizationError(f"INT8 quantization of {self.source} failed: {type(e).__name__}: {e}") from e


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    input_name: str = "image",
    float_nodes: Sequence[str] = (),
) -> Path:
    """Write the INT8 (QDQ) version of an fp32 ONNX graph in one step (see :class:`Int8Graph`).

    Args:
        fp32_path: the fp32 ``.onnx`` file (unchanged).
        out_path: the quantized ``.onnx`` file to write.
        calibration: preprocessed float32 images, each (3, S, S) or a batch (B, 3, S, S).
        input_name: the graph's input.
        float_nodes: weighted nodes of the simplified graph to leave in float (:attr:`Int8Graph.nodes`).

    Returns:
        ``out_path``.

    Raises:
        QuantizationError: no calibration images, or the quantizer failed (its message included).
    """
    out = Path(out_path)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        return Int8Graph(fp32_path, calibration, tmp, input_name).write(out, float_nodes)


def layer_sensitivity(graph: Int8Graph, images: Sequence[np.ndarray]) -> dict[str, float]:
    """How much each weighted node's quantization costs the graph's logits, measured by leaving it out.

    For every node of ``graph.nodes``: the mean KL divergence of the quantized graph's softmax from the fp32
    graph's, all-int8 minus with that node alone in float, both on ONNX Runtime as a bundle runs there
    (:class:`~dermascan.inference.backends.OnnxRuntimeBackend`). Higher is more sensitive; a score near 0 (or
    slightly below: the errors of several layers partly cancel) means int8 costs nothing there.

    Why this measure: the ladder's action is "keep these nodes in float", and ONNX Runtime's quantizer then
    still quantizes a float node's input when its producer is quantized, so a node's own activation or
    weight error (an SQNR per tensor) says little about what keeping it in float buys; measuring the
    action does, at the output the decisions are made from. A continuous divergence, not decision flips:
    all-int8 flips 0.5-1.4% of the decisions, a few images in a few hundred, too few to rank 20 layers.
    Cost: one cached-calibration quantizer pass and one ONNX Runtime run per node, ~10 s for a ResNet-18 at
    64 px on 2 cores (21 nodes, 128 images).

    Args:
        graph: the prepared graph.
        images: preprocessed float32 images, each (3, S, S) or a batch (B, 3, S, S); held out from
            calibration and never the parity images.

    Returns:
        ``{node: score}`` for every node of ``graph.nodes``, most sensitive first.

    Raises:
        ValueError: no images.
    """
    from dermascan.inference.backends import OnnxRuntimeBackend

    batches = _as_batches(images)
    if not batches:
        raise ValueError("layer sensitivity needs at least one held-out image")
    x = np.concatenate(batches)  # (N, 3, S, S)

    def log_softmax(path: Path, precision: str) -> np.ndarray:
        backend = OnnxRuntimeBackend(path, precision, device="cpu")
        z = np.concatenate([backend.run(x[i : i + 32]).logits for i in range(0, len(x), 32)]).astype(np.float64)
        backend.close()
        z -= z.max(axis=1, keepdims=True)  # (N, K)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ref = log_softmax(graph.fp32_path, "fp32")
    p_ref = np.exp(ref)

    def divergence(path: Path) -> float:
        return float((p_ref * (ref - log_softmax(path, "int8"))).sum(axis=1).mean())

    with tempfile.TemporaryDirectory(dir=graph.fp32_path.parent) as tmp:
        base = divergence(graph.write(Path(tmp) / "all.onnx"))
        scores = {n: base - divergence(graph.write(Path(tmp) / "one.onnx", [n])) for n in graph.nodes}
    log.info("INT8 sensitivity on %d held-out image(s): all-int8 KL %.3g; %s", len(x), base, _top(scores))
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def max_float_nodes(n_nodes: int) -> int:
    """The most nodes the ladder keeps in float: :data:`MAX_FLOAT_FRACTION` of them, at least one."""
    return max(1, math.floor(MAX_FLOAT_FRACTION * n_nodes))


def float_ladder(ranking: Sequence[str], limit: int) -> list[list[str]]:
    """The float sets the export tries after all-int8: the 1, 2, 4, ... first nodes of ``ranking``, then
    ``limit`` of them (the last rung), never more than ``limit``."""
    limit = min(limit, len(ranking))
    sizes = [k for k in (2**i for i in range(limit.bit_length())) if k < limit] + ([limit] if limit > 0 else [])
    return [list(ranking[:k]) for k in sizes]


def _as_batches(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each image (3, S, S) or batch (B, 3, S, S) as a float32 batch (B, 3, S, S)."""
    return [np.asarray(x, np.float32)[None] if np.ndim(x) == 3 else np.asarray(x, np.float32) for x in images]


def _top(scores: dict[str, float], n: int = 3) -> str:
    best = sorted(scores.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.3g}" for k, v in best)


__all__ = [
    "DEFAULT_CALIBRATION_IMAGES",
    "DEFAULT_SENSITIVITY_IMAGES",
    "MAX_FLOAT_FRACTION",
    "WEIGHTED_OPS",
    "Int8Graph",
    "QuantizationError",
    "float_ladder",
    "layer_sensitivity",
    "max_float_nodes",
    "quantize_onnx",
]
