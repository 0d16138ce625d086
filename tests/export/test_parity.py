"""Export parity: the criteria, the comparison, and an export that fails (leaving nothing behind)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dermascan.export import ExportParityError, export_bundle, split_images
from dermascan.export import parity as parity_lib
from dermascan.export.parity import (
    FP32_PROB_TOL,
    MIN_AGREEMENT,
    REDUCED_FEATURE_P95_TOL,
    REDUCED_MAP_P95_TOL,
    compare,
    passes,
    prepare_batches,
)
from dermascan.inference import Predictor
from dermascan.inference.backends import Outputs
from dermascan.testing import random_run, synthetic_jpeg


def test_criteria() -> None:
    assert passes("fp32", FP32_PROB_TOL / 2, 1.0, 1.0)
    assert not passes("fp32", FP32_PROB_TOL * 2, 1.0, 1.0)
    assert not passes("fp32", float("nan"), 1.0, 1.0)
    assert not passes("fp32", 0.0, 1.0, 1.0, max_abs_map_diff=0.5)  # a broken heat-map output fails fp32
    assert passes("bf16", 0.05, MIN_AGREEMENT, 1.0)  # reduced precision: decisions and heat maps count
    assert not passes("fp16", 0.0, 1.0, MIN_AGREEMENT - 0.001)
    # one nearly flat map may differ a lot; most displayed maps may not
    assert passes("int8", 0.1, 1.0, 1.0, max_abs_map_diff=1.0, p95_abs_map_diff=REDUCED_MAP_P95_TOL)
    assert not passes("int8", 0.1, 1.0, 1.0, max_abs_map_diff=1.0, p95_abs_map_diff=0.3)


def test_identical_models_agree(tmp_path: Path) -> None:
    run = random_run(tmp_path / "run", "resnet18", image_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibrated run
        a = Predictor.from_path(run, device="cpu")
        b = Predictor.from_path(run, device="cpu")
    batches, errors = prepare_batches(a, [synthetic_jpeg(60, 50, seed=i) for i in range(5)] + [b"broken"], batch_size=2)
    assert [len(x) for x in batches] == [2, 2, 1] and len(errors) == 1
    report = compare(a, b, batches)
    assert report.n_images == 5 and report.max_abs_prob_diff == 0.0 and report.passed
    assert report.primary_agreement == report.flag_agreement == 1.0
    assert report.max_abs_map_diff == 0.0 and "pass" in report.summary()


def test_perturbed_model_fails_fp32_but_passes_on_decisions(tmp_path: Path) -> None:
    run = random_run(tmp_path / "run", "resnet18", image_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Predictor.from_path(run, device="cpu")
        b = Predictor.from_path(run, device="cpu")
    with torch.no_grad():  # a small shift of every logit: probabilities move, decisions do not
        b.backend.module.model.fc.bias.add_(torch.linspace(0, 1e-2, 7))
    batches, _ = prepare_batches(a, [synthetic_jpeg(60, 50, seed=i) for i in range(4)])
    report = compare(a, b, batches, precision="fp32")
    assert report.max_abs_prob_diff > FP32_PROB_TOL and not report.passed
    assert compare(a, b, batches, precision="bf16").passed == (report.primary_agreement >= MIN_AGREEMENT)


def test_default_parity_images_are_the_validation_split(run_with_data: tuple[Path, list[str]]) -> None:
    run, val = run_with_data
    paths = split_images(run)
    assert [p.stem for p in paths] == val and all(p.is_file() for p in paths)


def test_run_without_splits_needs_parity_images(tmp_path: Path) -> None:
    run = random_run(tmp_path / "run", "resnet18", image_size=32)
    with pytest.raises(ValueError, match="--parity-images"):
        split_images(run)
    with pytest.raises(ValueError, match="--calibration-images"):
        split_images(run, "train")


def test_failed_parity_fails_the_export_and_writes_nothing(
    run_with_data: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, val = run_with_data
    monkeypatch.setattr(parity_lib, "FP32_PROB_TOL", -1.0)  # no model can pass: simulates a broken runtime
    out = tmp_path / "bundle"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibrated run
        with pytest.raises(ExportParityError, match="export parity failed") as info:
            export_bundle(run, out, fmt="torchscript")  # default parity images: the validation split
    (report,) = info.value.reports
    assert report.runtime == "torchscript" and report.n_images == len(val) and not report.passed
    assert np.isfinite(report.max_abs_prob_diff)
    assert not out.exists() and not list(tmp_path.glob(".bundle.tmp-*"))


class _Fixed:
    """A stand-in predictor returning fixed logits, maps and features (compare needs infer/probabilities/decide)."""

    runtime = "fixed"

    def __init__(self, logits: np.ndarray, maps: np.ndarray, features: np.ndarray | None = None) -> None:
        self.logits, self.maps, self.features = logits, maps, features
        self.backend = type("B", (), {"precision": "int8"})()

    def infer(self, x: np.ndarray) -> Outputs:
        return Outputs(self.logits, self.maps, self.features)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def decide(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return probs.argmax(1), probs.argmax(1) == 0


def test_heat_map_parity_compares_the_displayed_map_only() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((4, 7, 3, 3)).astype(np.float32)  # (B, K, h, w)
    other = maps.copy()
    other[:, 1:] = rng.random((4, 6, 3, 3))  # every map but class 0's changes
    logits = np.zeros((4, 7), np.float32)
    logits[:, 0] = 5.0  # class 0 is primary: its map is the one shown
    x = [np.zeros((4, 3, 8, 8), np.float32)]
    same_shown = compare(_Fixed(logits, maps), _Fixed(logits, other), x)
    assert same_shown.max_abs_map_diff == 0.0 and same_shown.passed
    logits[:, 0], logits[:, 1] = 0.0, 5.0  # now class 1's (changed) map is shown
    changed = compare(_Fixed(logits, maps), _Fixed(logits, other), x)
    assert changed.p95_abs_map_diff > REDUCED_MAP_P95_TOL and not changed.passed
    assert "p95" in changed.summary()


def test_feature_parity_catches_moved_embeddings() -> None:
    # The monitor compares served embeddings with a reference the eager model measured: a runtime that moves the
    # features would raise embedding drift on every window, so the export gate checks them too.
    rng = np.random.default_rng(1)
    maps = rng.random((20, 7, 3, 3)).astype(np.float32)
    logits = np.zeros((20, 7), np.float32)
    logits[:, 0] = 5.0
    feats = rng.random((20, 32)).astype(np.float32) + 0.5
    x = [np.zeros((20, 3, 8, 8), np.float32)]
    close = compare(_Fixed(logits, maps, feats), _Fixed(logits, maps, feats * 1.01), x)
    assert close.p95_rel_feature_diff == pytest.approx(0.01, rel=1e-3) and close.passed
    moved = compare(_Fixed(logits, maps, feats), _Fixed(logits, maps, feats + rng.random(feats.shape)), x)
    assert moved.p95_rel_feature_diff > REDUCED_FEATURE_P95_TOL and not moved.passed
    assert "features rel. diff" in moved.summary()
    exact = compare(_Fixed(logits, maps, feats), _Fixed(logits, maps, feats * 1.01), x, precision="fp32")
    assert not exact.passed  # 1% is far beyond fp32's 1e-3
    assert compare(_Fixed(logits, maps), _Fixed(logits, maps), x).max_rel_feature_diff is None  # no features output
