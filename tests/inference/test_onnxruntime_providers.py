"""ONNX Runtime's execution providers by ``device`` (cpu, cuda, tensorrt), IO binding, and GPU devices that are
missing here saying why. CI has no GPU: the GPU choices are checked on what the backend asks ONNX Runtime for."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dermascan.inference import RuntimeUnavailableError, load_bundle
from dermascan.inference import backends as backends_module
from dermascan.inference.backends import TENSORRT_MAX_BATCH, OnnxRuntimeBackend, TorchBackend, _ort_providers
from dermascan.testing import random_bundle

ALL_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The random-weight resnet18 bundle the other test modules of a session share (exported once).
    bundle = random_bundle(tmp_path_factory.getbasetemp() / "shared-resnet18-64", "resnet18", 64, reuse=True)
    return load_bundle(bundle).model_file


def test_io_binding_gives_the_plain_run_outputs(model_file: Path) -> None:
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    plain = OnnxRuntimeBackend(model_file, device="cpu")
    bound = OnnxRuntimeBackend(model_file, device="cpu", io_binding=True)
    assert not plain.io_binding and plain.describe()["io_binding"] is False  # CPU default: nothing to gain
    assert bound.describe() == {**plain.describe(), "io_binding": True}
    for a, b in zip(plain.run(x), bound.run(x), strict=True):
        assert a is not None and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)  # logits, maps, features


def test_default_and_cpu_are_the_cpu_provider_without_a_gpu(model_file: Path) -> None:
    if len(backends_module.onnxruntime_providers()) > 1:
        pytest.skip("this machine has a GPU provider")
    for device in (None, "cpu"):
        assert OnnxRuntimeBackend(model_file, device=device).device == "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("device", "provider"), [("cuda", "CUDAExecutionProvider"), ("tensorrt:1", "TensorrtExecutionProvider")]
)
def test_a_missing_gpu_provider_says_what_to_install(
    model_file: Path, monkeypatch: pytest.MonkeyPatch, device: str, provider: str
) -> None:
    monkeypatch.setattr(backends_module, "onnxruntime_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(RuntimeUnavailableError, match=f"no {provider} here.*install onnxruntime-gpu"):
        OnnxRuntimeBackend(model_file, device=device)


def test_a_provider_that_falls_back_is_refused(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime-gpu without CUDA's libraries lists the CUDA provider, then quietly runs on the CPU.
    monkeypatch.setattr(backends_module, "onnxruntime_providers", lambda: ALL_PROVIDERS[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ONNX Runtime warns that the CPU build has no CUDA provider
        with pytest.raises(RuntimeUnavailableError, match="could not start its CUDAExecutionProvider.*fell back"):
            OnnxRuntimeBackend(model_file, device="cuda")


def test_provider_choice_by_device(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_module, "onnxruntime_providers", lambda: ALL_PROVIDERS)
    cpu = ("CPUExecutionProvider", {})
    # TensorRT is never chosen unasked: it builds an engine in every new process
    assert _ort_providers(model_file, "fp16", None) == [("CUDAExecutionProvider", {"device_id": 0}), cpu]
    assert _ort_providers(model_file, "fp16", "cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), cpu]
    assert _ort_providers(model_file, "fp16", "cpu") == [cpu]
    trt = _ort_providers(model_file, "fp16", "tensorrt")
    assert [name for name, _ in trt] == ALL_PROVIDERS  # what TensorRT leaves out runs on CUDA, then the CPU
    options = trt[0][1]
    assert options["trt_fp16_enable"] is True and options["device_id"] == 0
    # one engine for every batch the Predictor sends, read from the graph's own input
    assert options["trt_profile_min_shapes"] == "image:1x3x64x64"
    assert options["trt_profile_max_shapes"] == f"image:{TENSORRT_MAX_BATCH}x3x64x64"
    assert _ort_providers(model_file, "fp32", "tensorrt")[0][1]["trt_fp16_enable"] is False
    with pytest.raises(ValueError, match="cpu, cuda\\[:N\\] or tensorrt\\[:N\\], got 'gpu'"):
        _ort_providers(model_file, "fp32", "gpu")


def test_fp16_on_the_cpu_provider_is_refused(model_file: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match="fp16 ONNX graph needs"):
        OnnxRuntimeBackend(model_file, precision="fp16", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_torch_on_cuda_without_cuda_says_why() -> None:
    with pytest.raises(RuntimeUnavailableError, match="torch sees no CUDA device"):
        TorchBackend(torch.nn.Linear(2, 2), device="cuda")
