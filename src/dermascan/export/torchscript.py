"""TorchScript export (``torch.jit.trace``), because the brief's edge tier asks for a TorchScript model.

PyTorch has deprecated TorchScript in favour of ``torch.export`` (and ``torch.jit`` prints deprecation
warnings in 2.14); ONNX is DermaScan's main artifact and TorchScript is kept for the brief's edge devices.
Tracing records the tensor operations of one forward pass; the wrappers used here have no data-dependent
control flow, so the trace is the model. The trace is made at batch 2 and checked at batch 1 and 3 against
the eager model, so a batch size frozen into the trace is caught at export.

Precision: ``fp16`` and ``bf16`` trace the model converted to that dtype between float32 casts, so the
archive takes and returns float32 whatever it computes in; ``fp32`` traces it as is.

Loading runs ``torch.jit.load``: TorchScript IR plus constants, no arbitrary Python (see
:mod:`dermascan.inference.bundle` on security).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from dermascan.errors import DermaScanError
from dermascan.export.onnx import CastWrapper

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchScriptExportError(DermaScanError, RuntimeError):
    """The traced archive does not reproduce the eager model at another batch size."""


def export_torchscript(model: nn.Module, path: str | Path, input_size: int, precision: str = "fp32") -> Path:
    """Trace ``model`` (eval, CPU, float32) and save it to ``path``.

    Args:
        model: a classifier or a :func:`~dermascan.explain.heatmap_model` wrapper returning ``(logits, maps,
            features)``.
        path: the archive to write (``model.ts``).
        input_size: square input side.
        precision: ``fp32``, ``fp16`` or ``bf16`` (see the module docstring).

    Returns:
        ``path``.

    Raises:
        TorchScriptExportError: the trace gives other results at batch 1 or 3.
    """
    path = Path(path)
    model = model.eval().cpu()
    if precision != "fp32":
        model = CastWrapper(copy.deepcopy(model), _DTYPES[precision]).eval()
    example = torch.randn(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation and tracer warnings
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, (example,), check_trace=False)
    tol = 1e-4 if precision == "fp32" else 5e-2
    with torch.no_grad():
        for b in (1, 3):
            x = torch.randn(b, 3, input_size, input_size, generator=torch.Generator().manual_seed(b))
            want, got = _first(model(x)), _first(traced(x))
            if want.shape != got.shape or float((want - got).abs().max()) > tol:
                raise TorchScriptExportError(
                    f"the TorchScript trace of {type(model).__name__} does not match the eager model at batch {b}"
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(path))
    return path


def _first(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return (out[0] if isinstance(out, tuple) else out).float()


__all__ = ["TorchScriptExportError", "export_torchscript"]
