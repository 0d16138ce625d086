"""ONNX export (``torch.onnx.export``), the main deployable artifact.

The graph takes ``image`` (batch, 3, S, S) float32 and returns ``logits`` (batch, K) and, for a model
wrapped by :func:`dermascan.explain.heatmap_model`, ``maps`` (batch, M, h, w) and ``features`` (batch, D), the
penultimate embedding: one forward pass gives the diagnosis, what its heat map needs and what embedding drift
reads, with no autograd or second pass at serving time.

The batch axis is dynamic. The dynamo exporter (the default since torch 2.9) has been seen to fix a ViT
at batch 1 when traced at batch 1, so the model is traced at batch 2 and the written graph is checked: its
input's batch axis must be symbolic, and it must run at batch 1 and 3 on ONNX Runtime with the eager model's
outputs; otherwise the legacy TorchScript-based exporter is tried before giving up.

Precision (``fp32`` / ``fp16`` / ``bf16``, see :mod:`dermascan.export`): ``fp16`` exports the model in half
precision between float32 casts (``image`` and the outputs stay float32), for GPUs; ``bf16`` writes the fp32
graph, because ONNX convolutions have no bf16 type, and the runtime computes in bf16 (OpenVINO's precision
hint).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dermascan.errors import DermaScanError

log = logging.getLogger(__name__)

#: The graph's outputs, in order; a plain classifier has the first only.
OUTPUT_NAMES = ("logits", "maps", "features")
#: ONNX opset written (18: LayerNormalization and friends as single ops; ORT >= 1.14, OpenVINO >= 2023).
OPSET = 18
INPUT_NAME = "image"


class ONNXExportError(DermaScanError, RuntimeError):
    """The model could not be exported with a working dynamic batch axis."""


class CastWrapper(nn.Module):
    """Run ``model`` in ``dtype`` between float32 input and float32 outputs.

    The deployed interface stays float32 whatever the precision inside, so every runtime and the
    preprocessing see one input type.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        out = self.model(x.to(self.dtype))
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def output_names(model: nn.Module, input_size: int) -> list[str]:
    """The first of :data:`OUTPUT_NAMES` the model returns (``logits``; with a heat-map head also ``maps`` and
    ``features``), from a probe forward pass."""
    with torch.inference_mode():
        param = next(model.parameters())
        out = model(torch.zeros(1, 3, input_size, input_size, dtype=param.dtype, device=param.device))
    return list(OUTPUT_NAMES[: len(out) if isinstance(out, tuple) else 1])


def export_onnx(
    model: nn.Module, path: str | Path, input_size: int, precision: str = "fp32", opset: int = OPSET
) -> Path:
    """Export ``model`` (eval mode, CPU, float32) to ``path`` with a dynamic batch axis.

    Args:
        model: a classifier, or a :func:`~dermascan.explain.heatmap_model` wrapper returning ``(logits, maps,
            features)``.
        path: the ``.onnx`` file to write (weights inline; ViT-B/16 is 330 MB, far below protobuf's 2 GB).
        input_size: square input side.
        precision: ``fp32``, ``fp16`` (half-precision graph) or ``bf16`` (the fp32 graph; see module docs).
        opset: ONNX opset.

    Returns:
        ``path``.

    Raises:
        ONNXExportError: neither exporter produced a graph with a working dynamic batch axis.
    """
    path = Path(path)
    model = model.eval().cpu()
    names = output_names(model, input_size)
    if precision == "fp16":
        model = CastWrapper(_copy(model), torch.float16).eval()
    example = torch.randn(2, 3, input_size, input_size)  # batch 2: a batch-1 trace may fix the axis to 1
    probes = {b: torch.randn(b, 3, input_size, input_size, generator=torch.Generator().manual_seed(b)) for b in (1, 3)}
    with torch.inference_mode():
        expected = {b: _as_tuple(model(x))[0].numpy() for b, x in probes.items()}  # eager logits
    errors: list[str] = []
    for dynamo in (True, False):
        try:
            _export(model, example, path, names, opset, dynamo)
            check_onnx(path, names, {b: (x.numpy(), expected[b]) for b, x in probes.items()})
            return path
        except Exception as e:  # try the other exporter, then report both failures
            errors.append(f"{'dynamo' if dynamo else 'legacy'} exporter: {type(e).__name__}: {e}")
            log.warning("ONNX export with the %s exporter failed: %s", "dynamo" if dynamo else "legacy", e)
    raise ONNXExportError(f"could not export {type(model).__name__} to ONNX with a dynamic batch: {errors}")


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def _as_tuple(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _export(model: nn.Module, example: Tensor, path: Path, names: list[str], opset: int, dynamo: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer chatter; the graph is checked below
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
                optimize=True,
            )
        else:
            axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )


def check_onnx(
    path: str | Path,
    names: list[str] | None = None,
    probes: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    atol: float = 1e-3,
) -> None:
    """Validate a graph and its dynamic batch axis.

    Args:
        path: the ``.onnx`` file.
        names: expected output names.
        probes: ``{batch: (input, expected logits)}``; each batch is run on ONNX Runtime's CPU provider and
            must give the eager logits within ``atol`` (a graph fixed at batch 1 fails at batch 3 here).
            Skipped for fp16 graphs, which the CPU provider cannot run reliably.
        atol: tolerance on the logits (a wiring check; parity on real images is stricter).

    Raises:
        ONNXExportError: the graph is invalid, has a fixed batch, other outputs, or other results.
    """
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if dim0.HasField("dim_value"):
        raise ONNXExportError(f"{path}: the input's batch axis is fixed at {dim0.dim_value}, not dynamic")
    got = [o.name for o in proto.graph.output]
    if names is not None and got != names:
        raise ONNXExportError(f"{path}: outputs are {got}, expected {names}")
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    del proto
    if not probes or fp16:
        return
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for b, (x, want) in probes.items():
        logits = session.run(None, {INPUT_NAME: x})[0]
        if logits.shape != want.shape:
            raise ONNXExportError(f"{path}: batch {b} gave logits of shape {logits.shape}, expected {want.shape}")
        diff = float(np.abs(logits - want).max())
        if diff > atol:
            raise ONNXExportError(f"{path}: at batch {b} the logits differ from the eager model by {diff:.3g}")


__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAMES",
    "CastWrapper",
    "ONNXExportError",
    "check_onnx",
    "export_onnx",
    "output_names",
]
