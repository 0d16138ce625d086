"""TorchScript export: traced heat-map models keep a dynamic batch; bundles run through the Predictor."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dermascan.explain import heatmap_model
from dermascan.export.torchscript import export_torchscript
from dermascan.inference import Prediction, Predictor
from dermascan.models import create_model
from dermascan.taxonomy import CLASSES
from dermascan.testing import random_bundle, synthetic_jpeg


def _load(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated (see dermascan.export)
        return torch.jit.load(str(path))


@pytest.mark.parametrize(("arch", "maps_shape"), [("resnet18", (7, 2, 2)), ("vit_tiny", (1, 4, 4))])
def test_trace_keeps_a_dynamic_batch(arch: str, maps_shape: tuple[int, ...], tmp_path: Path) -> None:
    torch.manual_seed(0)
    size = 64 if arch == "resnet18" else 32
    model = create_model(arch, image_size=size).eval()
    wrapped = heatmap_model(model).eval()
    traced = _load(export_torchscript(wrapped, tmp_path / "model.ts", input_size=size))
    for batch in (1, 3):  # traced at batch 2
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            (want_logits, want_maps, want_feats), (logits, maps, feats) = wrapped(x), traced(x)
        assert logits.shape == (batch, 7) and maps.shape == (batch, *maps_shape)
        torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(maps, want_maps, atol=1e-5, rtol=0)
        torch.testing.assert_close(feats, want_feats, atol=1e-5, rtol=0)


def test_bf16_trace_takes_and_returns_float32(tmp_path: Path) -> None:
    model = create_model("resnet18", image_size=32).eval()
    traced = _load(export_torchscript(model, tmp_path / "bf16.ts", input_size=32, precision="bf16"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = traced(x)
        want = model(x)
    assert out.dtype == torch.float32 and model.fc.weight.dtype == torch.float32
    assert float((out - want).abs().max()) < 0.1


def test_torchscript_bundle_round_trip(tmp_path: Path) -> None:
    bundle = random_bundle(tmp_path, "vit_tiny", 32, fmt="torchscript")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["file"] == "model.ts" and manifest["model"]["heatmap"] == "attention"
    assert [r["runtime"] for r in manifest["parity"]] == ["torchscript"]
    images = [synthetic_jpeg(80 + 10 * i, 64, seed=i) for i in range(3)]
    ts = Predictor.from_path(bundle)  # auto: torchscript
    eager = Predictor.from_path(bundle, runtime="torch", device="cpu")  # the bundle's state dict
    assert ts.runtime == "torchscript" and eager.runtime == "torch"
    pairs = zip(ts.predict(images, heatmap=True), eager.predict(images, heatmap=True), strict=True)
    for i, (a, b) in enumerate(pairs):
        assert isinstance(a, Prediction) and isinstance(b, Prediction)
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in CLASSES) < 1e-4
        assert a.heatmap.shape == (64, 80 + 10 * i)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-3)
