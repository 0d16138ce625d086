"""The backends: one loaded model on one runtime (ONNX Runtime, OpenVINO, PyTorch), behind one ``run``.

Which runtime serves which bundle, and how a backend is built for it, is :mod:`dermascan.inference.runtimes`.
Backends are not thread-safe; the Predictor serialises calls to ``run``.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dermascan.errors import DermaScanError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

#: An int8 (QDQ) graph runs its quantized operators in int8 whatever the hint; what stays in float (the layers
#: kept out of quantization for accuracy) stays in f32: in bf16 it ran ResNet-50 faster (9.9 -> 8.2 ms) but
#: took the demo model's decision agreement from 99.6% to 99.4%, below the parity gate.
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f32", "int8": "f32"}


class RuntimeUnavailableError(DermaScanError, RuntimeError):
    """The runtime asked for cannot run this model here (package missing, no model file for it, ...)."""


#: ONNX Runtime's GPU execution providers, by the ``device`` that asks for them (``cuda[:N]``, ``tensorrt[:N]``).
_ORT_GPU = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
#: The largest batch a TensorRT engine is built for (its optimisation profile spans 1 to this); a larger batch
#: makes the provider build another engine, tens of seconds. The service batches up to 8 by default and the
#: GPU benchmark up to 32.
TENSORRT_MAX_BATCH = 32


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime execution providers present here, fastest first (TensorRT, CUDA, then CPU)."""
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in present]


class Outputs(NamedTuple):
    """A batch's raw outputs: ``logits`` float32 (B, K); ``maps`` (B, M, h, w) and ``features`` (B, D), the
    penultimate embedding, or ``None`` when the model has no heat-map head (a plain classifier graph)."""

    logits: np.ndarray
    maps: np.ndarray | None = None
    features: np.ndarray | None = None


class Backend(ABC):
    """One loaded model on one runtime.

    Attributes:
        runtime: runtime name (see :data:`RUNTIMES`).
        precision: the precision it computes at (``fp32`` / ``bf16`` / ``fp16`` / ``int8``).
        device: where it runs, as the runtime names it (``CPUExecutionProvider``, ``CPU``, ``cuda:0``).
    """

    runtime: str = ""
    precision: str = "fp32"
    device: str = "cpu"

    @abstractmethod
    def run(self, x: np.ndarray) -> Outputs:
        """Raw outputs for a batch.

        Args:
            x: float32 array (B, 3, S, S), preprocessed.
        """

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (runtime, precision, device) for logs and benchmark reports."""
        return {"runtime": self.runtime, "precision": self.precision, "device": self.device}

    def close(self) -> None:  # noqa: B027 (optional hook: most runtimes free memory when collected)
        """Free the runtime's resources early (optional)."""


def _split_outputs(outputs: list[np.ndarray]) -> Outputs:
    # a bundle exported before the features output has (logits, maps): its features are None
    return Outputs(*(np.asarray(o, dtype=np.float32) for o in outputs[:3]))


class OnnxRuntimeBackend(Backend):
    """An ONNX graph on ONNX Runtime.

    On a GPU provider the graph runs through IO binding (what ONNX Runtime recommends for its GPU providers): the
    input is copied to the device once, the outputs are allocated there and copied back once, after the run. What
    that is worth here is unmeasured: ``benchmarks/bench_gpu.py`` times the CUDA provider with and without it
    (``io_binding`` is an attribute too, which it sets).

    Args:
        model_path: the ``.onnx`` file.
        precision: precision the graph was exported at (fp16 graphs need a GPU provider).
        device: ``cpu`` (CPU provider only); ``cuda`` or ``cuda:N`` (the CUDA provider, required);
            ``tensorrt`` or ``tensorrt:N`` (the TensorRT provider, required, with CUDA and CPU for the operators
            it leaves out); ``None``: the CUDA provider when present, else the CPU one. TensorRT is never picked
            unasked: it builds an engine (tens of seconds per model) in every new process, at its first run.
        threads: intra-op threads (``None``: ONNX Runtime's default, one per physical core).
        io_binding: run through IO binding (``None``: on a GPU provider only; the CPU provider gains nothing).

    Raises:
        RuntimeUnavailableError: the provider asked for is missing, or failed to start (no CUDA or TensorRT
            libraries), or an fp16 graph would land on the CPU provider.
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        precision: str = "fp32",
        device: str | None = None,
        threads: int | None = None,
        io_binding: bool | None = None,
    ) -> None:
        import onnxruntime as ort

        providers = _ort_providers(model_path, precision, device)
        names = [name for name, _ in providers]
        if precision == "fp16" and names == ["CPUExecutionProvider"]:
            raise RuntimeUnavailableError(
                "an fp16 ONNX graph needs onnxruntime's CUDA or TensorRT provider: the CPU provider lacks most "
                "fp16 kernels (and crashed on an fp16 ViT graph); on a CPU use runtime='openvino' or an fp32/bf16 "
                "bundle"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # keep the provider fallback chatter out of the CLI output
        if threads:
            options.intra_op_num_threads = int(threads)
        # ORT's idle intra-op threads spin by default, busy-waiting for the next call; on a clinic's few cores
        # they steal the cores from the decoding, preprocessing and heat-map rendering around each call.
        # Measured on 2 cores, ResNet-50 at batch 1: inference 37 -> 25 ms and rendering 3-11 -> 0.5 ms without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ORT's WeightBiasQuantization pass quantizes, at load time, the float weights of a Conv/Gemm that sits
        # between a DequantizeLinear and a QuantizeLinear: exactly the layers an int8 export kept in float for
        # accuracy (dermascan.export.quantize), which then ran in int8 after all (measured: a mixed graph's
        # output as far from fp32 as all-int8's; OpenVINO kept them in float). The quantizer writes the int8
        # layers' weights int8 already, so the pass has nothing else to do in a bundle's graph.
        disabled = ["WeightBiasQuantization"] if precision == "int8" else []
        self.session = ort.InferenceSession(
            str(model_path),
            options,
            providers=names,
            provider_options=[provider_options for _, provider_options in providers],
            disabled_optimizers=disabled,
        )
        self.device = self.session.get_providers()[0]
        if self.device != names[0]:
            # A GPU provider whose libraries are missing does not fail the session: ONNX Runtime falls back to the
            # next provider (and logs why). Asked for one, running on another would mislabel every figure.
            raise RuntimeUnavailableError(
                f"onnxruntime could not start its {names[0]} (missing CUDA/cuDNN or TensorRT libraries?) and fell "
                f"back to {self.device}; onnxruntime's log above says why"
            )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.io_binding = self.device != "CPUExecutionProvider" if io_binding is None else io_binding
        self._output_device = ("cpu", 0) if self.device == "CPUExecutionProvider" else ("cuda", _device_index(device))
        self.precision = "fp32" if precision == "bf16" else precision
        if precision == "bf16":
            log.info("onnxruntime has no bf16 convolution: running the bf16 bundle's fp32 graph in fp32")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "io_binding": self.io_binding}

    def run(self, x: np.ndarray) -> Outputs:
        x = np.ascontiguousarray(x, np.float32)
        if not self.io_binding:
            return _split_outputs(self.session.run(None, {self.input_name: x}))
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, x)
        for name in self.output_names:
            binding.bind_output(name, *self._output_device)  # shape unknown until the run: ORT allocates there
        self.session.run_with_iobinding(binding)
        return _split_outputs(binding.copy_outputs_to_cpu())


def _device_index(device: str | None) -> int:
    """``N`` of ``cuda:N`` / ``tensorrt:N``; 0 without one."""
    _, _, index = (device or "").partition(":")
    return int(index) if index.isdigit() else 0


def _ort_providers(
    model_path: str | os.PathLike[str], precision: str, device: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """``(provider, options)`` for ``device`` (see :class:`OnnxRuntimeBackend`), the CPU provider last."""
    present = onnxruntime_providers()
    kind = (device or "").partition(":")[0].lower()
    cpu: tuple[str, dict[str, Any]] = ("CPUExecutionProvider", {})
    if kind == "cpu":
        return [cpu]
    if kind and kind not in _ORT_GPU:
        raise ValueError(f"onnxruntime device must be cpu, cuda[:N] or tensorrt[:N], got {device!r}")
    cuda: tuple[str, dict[str, Any]] = ("CUDAExecutionProvider", {"device_id": _device_index(device)})
    if not kind:  # the default: the CUDA provider when present (never TensorRT unasked, see the class)
        return [cuda, cpu] if cuda[0] in present else [cpu]
    wanted = _ORT_GPU[kind]
    if wanted not in present:
        raise RuntimeUnavailableError(
            f"onnxruntime has no {wanted} here (present: {', '.join(present)}): install onnxruntime-gpu"
            + (" and TensorRT" if kind == "tensorrt" else "")
        )
    if kind == "cuda":
        return [cuda, cpu]  # operators the CUDA provider lacks run on the CPU
    name, side = _onnx_input(model_path)
    shape = f"3x{side}x{side}"
    trt = {
        "device_id": _device_index(device),
        "trt_fp16_enable": precision == "fp16",
        # One optimisation profile for every batch up to TENSORRT_MAX_BATCH: without it the provider builds a
        # new engine whenever a batch is larger than any seen before.
        "trt_profile_min_shapes": f"{name}:1x{shape}",
        "trt_profile_opt_shapes": f"{name}:8x{shape}",
        "trt_profile_max_shapes": f"{name}:{TENSORRT_MAX_BATCH}x{shape}",
    }
    return [(wanted, trt), *([cuda] if cuda[0] in present else []), cpu]


def _onnx_input(model_path: str | os.PathLike[str]) -> tuple[str, int]:
    """The graph's input name and square side (the profile TensorRT builds its engine for)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim  # (batch, 3, S, S)
    return graph.input[0].name, int(dims[-1].dim_value)


class OpenVINOBackend(Backend):
    """An ONNX graph on OpenVINO (read directly, no conversion step).

    Args:
        model_path: the ``.onnx`` file.
        precision: ``fp32`` or ``fp16`` (computed in f32) or ``bf16`` (computed in bf16: native on CPUs with
            AVX512_BF16 or AMX) or ``int8`` (a quantized graph: int8 kernels, AVX512-VNNI or AMX).
        device: OpenVINO device name (``CPU``, ``GPU``; ``None``: ``CPU``).
        threads: inference threads (``None``: OpenVINO's default, all cores).
    """

    runtime = "openvino"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        precision: str = "fp32",
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        import openvino as ov

        core = ov.Core()
        self.device = (device or "CPU").upper()
        hint = _OV_PRECISION[precision]
        if self.device != "CPU" and precision != "fp32":
            hint = "f16"  # Intel GPUs and NPUs compute reduced precision in f16, not bf16
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all cores on it: the clinic's use
            "INFERENCE_PRECISION_HINT": hint,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(core.read_model(str(model_path)), self.device, config)
        self.request = self.compiled.create_infer_request()
        self.precision = "int8" if precision == "int8" else {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[hint]
        self.n_outputs = len(self.compiled.outputs)

    def run(self, x: np.ndarray) -> Outputs:
        result = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        # The request reuses its output buffers on the next call: copy out.
        return _split_outputs([np.array(result[self.compiled.output(i)]) for i in range(self.n_outputs)])


class TorchBackend(Backend):
    """A PyTorch module (eager, compiled or TorchScript) returning logits or ``(logits, maps, features)``.

    Args:
        module: the model (already wrapped by ``heatmap_model`` when maps are wanted), or a TorchScript module.
        runtime: ``torch``, ``torch-compile`` or ``torchscript``.
        precision: ``fp32``, ``bf16`` or ``fp16``; for eager and compiled modules the weights are cast to it.
            A TorchScript archive keeps the precision it was traced at (pass that).
        device: torch device (``None``: ``cuda`` when available, else ``cpu``).
        family: ``cnn`` or ``vit``; CNNs in bf16/fp16 use the channels-last memory format, which oneDNN and
            cuDNN run faster (a ViT has one convolution, nothing to gain).
    """

    def __init__(
        self,
        module: nn.Module,
        runtime: str = "torch",
        precision: str = "fp32",
        device: str | None = None,
        family: str = "cnn",
    ) -> None:
        import torch

        self.torch = torch
        self.runtime = runtime
        self.precision = precision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeUnavailableError(
                f"torch sees no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
                "use device='cpu' or a CUDA build of torch on a machine with an NVIDIA GPU"
            )
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        module = module.eval().to(self.device)
        if runtime != "torchscript":
            module = module.to(dtype)
            if family == "cnn" and precision != "fp32":
                module = module.to(memory_format=torch.channels_last)
                self.memory_format = torch.channels_last
            else:
                self.memory_format = torch.contiguous_format
            if runtime == "torch-compile":
                module = torch.compile(module)
        else:
            self.memory_format = torch.contiguous_format
            dtype = torch.float32  # the archive casts its input itself
        self.input_dtype = dtype
        self.module = module

    def run(self, x: np.ndarray) -> Outputs:
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device, self.input_dtype)
            out = self.module(t.contiguous(memory_format=self.memory_format))
            outs = list(out) if isinstance(out, tuple | list) else [out]
            return _split_outputs([o.float().cpu().numpy() for o in outs])


__all__ = [
    "TENSORRT_MAX_BATCH",
    "Backend",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "Outputs",
    "RuntimeUnavailableError",
    "TorchBackend",
    "onnxruntime_providers",
]
