"""Inference backends behind the Predictor: ONNX Runtime, OpenVINO and PyTorch (eager, torch.compile,
TorchScript). Each takes a preprocessed float32 batch and returns raw logits and, when the graph has them,
raw heat maps: ``run(x (B, 3, S, S)) -> (logits (B, K), maps (B, M, h, w) or None)``.

Only the PyTorch backends import torch, and only when they are created: a process serving an ONNX bundle
through ONNX Runtime or OpenVINO never loads it (~670 MiB saved).

Runtime names (``Predictor.from_path(..., runtime=...)``):

========================  ===============  ===========================================================
runtime                   needs            notes
========================  ===============  ===========================================================
``onnxruntime``           ``model.onnx``   CUDA > CPU execution providers; TensorRT with ``device="tensorrt"``
``openvino``              ``model.onnx``   reads the ONNX file directly; CPU (or ``device="GPU"``)
``torch``                 weights          eager PyTorch from the bundle's state dict or a checkpoint
``torch-compile``         weights          ``torch.compile`` of the same (first call: tens of seconds)
``torchscript``           ``model.ts``     ``torch.jit.load`` of a traced archive
========================  ===============  ===========================================================

Precision at run time (``fp32`` / ``bf16`` / ``fp16`` / ``int8``; by default the bundle's own):

* ``onnxruntime``: runs the graph as exported. An fp16 graph needs a GPU provider: the CPU provider has
  few fp16 kernels, and 1.32 crashed (segfault) on an fp16 ViT graph after its fusions, so it is refused on
  CPU. A ``bf16`` request runs the fp32 graph in fp32 (ONNX has no bf16 convolution).
* ``openvino``: ``INFERENCE_PRECISION_HINT`` is always set (``f32`` for fp32 and fp16 graphs, ``bf16`` for
  bf16), because OpenVINO would otherwise silently compute in bf16 on CPUs with native bf16 support, which
  is not what an fp32 bundle was validated at.
* An ``int8`` bundle holds a quantized (QDQ) graph: ONNX Runtime and OpenVINO run its quantized operators
  with int8 kernels, the rest in f32. Only an int8 bundle can run at int8.
* ``torch`` / ``torch-compile``: the weights and activations are cast to the precision (CNNs also go
  channels-last in bf16/fp16, which oneDNN runs faster); input and outputs stay float32. An int8 bundle's
  fp32 weights run in fp32.
* ``torchscript``: runs at the precision it was traced at (the archive casts its input itself).

Automatic choice (:func:`choose_runtime`), measured rather than assumed: an ONNX bundle runs on ONNX Runtime
when a CUDA or TensorRT provider is present (NVIDIA GPU), else on OpenVINO on x86-64 CPUs (Intel, and AMD
with AVX-512, where it beat ONNX Runtime too), else on ONNX Runtime's CPU provider. A TorchScript bundle
runs on ``torchscript``; a run folder or checkpoint on ``torch``.

Backends are not thread-safe; the Predictor serialises calls to ``run``.
"""

from __future__ import annotations

import importlib.util
import logging
import platform
import warnings
from typing import TYPE_CHECKING

from dermascan.errors import ConfigError
from dermascan.inference.backends import (
    Backend,
    OnnxRuntimeBackend,
    OpenVINOBackend,
    RuntimeUnavailableError,
    TorchBackend,
    onnxruntime_providers,
)

if TYPE_CHECKING:
    from torch import nn

    from dermascan.inference.bundle import Bundle

log = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "openvino", "torch", "torch-compile", "torchscript")
REQUIRES = {
    "onnxruntime": "onnx",
    "openvino": "onnx",
    "torch": "weights",
    "torch-compile": "weights",
    "torchscript": "torchscript",
}
_PACKAGE = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "torch": "torch",
    "torch-compile": "torch",
    "torchscript": "torch",
}


def _has_package(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def available_runtimes() -> dict[str, str | None]:
    """Which runtimes can run here: ``{name: None if available else the reason it is not}``.

    Checks only that the package is installed (without importing it, so this stays cheap and torch-free).
    """
    return {
        rt: None if _has_package(_PACKAGE[rt]) else f"the {_PACKAGE[rt]} package is not installed" for rt in RUNTIMES
    }


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def unavailable_reason(
    runtime: str, model_format: str, precision: str = "fp32", have_weights: bool = False
) -> str | None:
    """Why ``runtime`` cannot serve a model here, or ``None`` when it can: the one rule of who serves what.

    Used by :func:`choose_runtime`, :func:`backend_for_bundle`, the export parity check and the benchmark.

    Args:
        runtime: one of :data:`RUNTIMES`.
        model_format: ``onnx``, ``torchscript`` or ``checkpoint`` (a run folder / ``.ckpt``).
        precision: the precision it would run at (an fp16 ONNX graph needs a GPU provider on ONNX Runtime).
        have_weights: the bundle also carries a state dict (what the PyTorch runtimes run).
    """
    _check_runtime_name(runtime)
    missing = available_runtimes()[runtime]
    if missing is not None:
        return missing
    need = REQUIRES[runtime]
    if model_format == "checkpoint":
        return None if need == "weights" else f"a checkpoint runs on torch or torch-compile, not {runtime}"
    if need == "weights" and not have_weights:
        return "the bundle has no state dict (weights.safetensors)"
    if need in ("onnx", "torchscript") and need != model_format:
        return f"needs a {need} bundle, this one is {model_format}"
    if runtime == "onnxruntime" and precision == "fp16" and len(onnxruntime_providers()) == 1:
        return "fp16 needs onnxruntime's CUDA/TensorRT provider"
    return None


def choose_runtime(model_format: str, precision: str = "fp32", have_weights: bool = False) -> str:
    """The fastest runtime present for a model (see the module docstring for the order).

    Args:
        model_format: ``onnx``, ``torchscript`` or ``checkpoint`` (a run folder / ``.ckpt``).
        precision: the bundle's precision (an fp16 ONNX graph never goes to ONNX Runtime's CPU provider).
        have_weights: the bundle also carries a state dict (a last resort when no ONNX runtime exists).

    Raises:
        RuntimeUnavailableError: nothing installed can run it, with what to install.
    """
    gpu = available_runtimes()["onnxruntime"] is None and len(onnxruntime_providers()) > 1
    if gpu:
        order = ["onnxruntime", "openvino"]
    elif _is_x86_64():
        order = ["openvino", "onnxruntime"]
    else:
        order = ["onnxruntime", "openvino"]
    order += ["torchscript", "torch"]
    for runtime in order:
        if unavailable_reason(runtime, model_format, precision, have_weights) is None:
            return runtime
    raise RuntimeUnavailableError(
        f"no installed runtime can run a {precision} {model_format} model: install onnxruntime or openvino "
        "(ONNX bundles) or torch (TorchScript bundles, run folders)"
    )


def with_heatmap_head(model: nn.Module) -> tuple[nn.Module, str | None]:
    """``(heatmap_model(model), kind)`` when the architecture has a single-pass heat-map head, else
    ``(model, None)`` (then predictions come without heat maps)."""
    from dermascan.explain.export_head import UnsupportedArchitectureError, heatmap_model

    try:
        wrapped = heatmap_model(model)
    except UnsupportedArchitectureError as e:
        log.warning("no heat maps for this model: %s", e)
        return model, None
    return wrapped.eval(), str(wrapped.kind)


def torch_model_from_bundle(bundle: Bundle) -> nn.Module:
    """Rebuild the eager model from a bundle's ``weights.safetensors`` (no pickle involved)."""
    from dermascan.models import create_model

    if bundle.weights_file is None:
        raise RuntimeUnavailableError(
            f"bundle {bundle.path} carries no state dict, so the PyTorch runtimes cannot run it; use "
            f"runtime='onnxruntime'/'openvino' or export with weights"
        )
    card = bundle.card
    model = create_model(
        card.arch,
        num_classes=len(card.classes),
        weights=str(bundle.weights_file),
        image_size=card.preprocessing.input_size,
    )
    return model.eval()


def backend_for_bundle(
    bundle: Bundle, runtime: str, precision: str | None = None, device: str | None = None, threads: int | None = None
) -> Backend:
    """Load a verified bundle on ``runtime`` (``auto`` picks with :func:`choose_runtime`).

    Raises:
        RuntimeUnavailableError: the runtime is missing, or the bundle lacks the file it needs.
    """
    if precision == "int8" and bundle.precision != "int8":
        raise ValueError(
            f"bundle {bundle.path} is {bundle.precision}: int8 needs a quantized graph, exported with "
            "`dermascan export --format onnx --precision int8`"
        )
    precision = precision or bundle.precision
    if runtime == "auto":
        runtime = choose_runtime(bundle.model_format, bundle.precision, bundle.weights_file is not None)
    why = unavailable_reason(runtime, bundle.model_format, precision, bundle.weights_file is not None)
    if why is not None:
        raise RuntimeUnavailableError(
            f"runtime {runtime!r} cannot run bundle {bundle.path} ({bundle.precision} {bundle.model_format}): {why}"
        )
    if runtime == "onnxruntime":
        return OnnxRuntimeBackend(bundle.model_file, precision, device, threads)
    if runtime == "openvino":
        return OpenVINOBackend(bundle.model_file, precision, device, threads)
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if runtime == "torchscript":
        map_location = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation: see dermascan.export
            module = torch.jit.load(str(bundle.model_file), map_location=map_location)
        return TorchBackend(module, "torchscript", bundle.precision, map_location)
    if precision == "int8":
        log.info("the PyTorch runtimes run an int8 bundle's fp32 weights, in fp32")
        precision = "fp32"
    model = torch_model_from_bundle(bundle)
    module = with_heatmap_head(model)[0] if bundle.heatmap else model
    return TorchBackend(module, runtime, precision, device, bundle.card.family)


def backend_for_model(
    model: nn.Module,
    runtime: str = "torch",
    precision: str = "fp32",
    device: str | None = None,
    heatmap: bool = True,
    family: str = "cnn",
) -> tuple[Backend, str | None]:
    """Run a live PyTorch model (from a checkpoint) on ``torch`` or ``torch-compile``.

    Returns:
        ``(backend, heat-map kind or None)``.
    """
    if runtime == "auto":
        runtime = "torch"
    if runtime not in ("torch", "torch-compile"):
        raise RuntimeUnavailableError(
            f"a checkpoint runs on 'torch' or 'torch-compile', not {runtime!r}: export a bundle "
            "(`dermascan export`) for onnxruntime, openvino or torchscript"
        )
    _check_runtime(runtime)
    module, kind = with_heatmap_head(model) if heatmap else (model, None)
    return TorchBackend(module, runtime, precision, device, family), kind


def _check_runtime_name(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}: expected 'auto' or one of {', '.join(RUNTIMES)}")


def _check_runtime(runtime: str) -> None:
    _check_runtime_name(runtime)
    why = available_runtimes()[runtime]
    if why is not None:
        raise RuntimeUnavailableError(f"runtime {runtime!r} is not available: {why}")


__all__ = [
    "RUNTIMES",
    "Backend",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "RuntimeUnavailableError",
    "TorchBackend",
    "available_runtimes",
    "backend_for_bundle",
    "backend_for_model",
    "choose_runtime",
    "onnxruntime_providers",
    "torch_model_from_bundle",
    "unavailable_reason",
    "with_heatmap_head",
]
