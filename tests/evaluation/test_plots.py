"""Each plot writes a non-empty PNG atomically and returns its path (tiny inputs)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dermascan.evaluation import plots
from dermascan.evaluation.calibration import apply_temperature, fit_temperature, softmax
from dermascan.taxonomy import NUM_CLASSES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, NUM_CLASSES, n)
    logits = rng.normal(size=(n, NUM_CLASSES))
    logits[np.arange(n), y] += 2.0
    return y, 3.0 * logits


def _assert_png(path, returned):
    assert returned == path
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_confusion_matrix_plot(tmp_path, data):
    y, logits = data
    path = tmp_path / "cm.png"
    _assert_png(path, plots.plot_confusion_matrix(y, logits.argmax(1), path))


def test_confusion_matrix_plot_with_an_absent_class(tmp_path):
    path = tmp_path / "cm.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the absent classes' rows are NaN, by design
        returned = plots.plot_confusion_matrix([0, 1, 1], [0, 1, 0], path)
    _assert_png(path, returned)


def test_roc_plot_with_operating_point(tmp_path, data):
    y, logits = data
    path = tmp_path / "nested" / "roc.png"  # the folder is created
    p_mel = softmax(logits)[:, 0]
    _assert_png(path, plots.plot_roc((y == 0).astype(int), p_mel, path, threshold=0.2))


def test_reliability_plot_before_and_after(tmp_path, data):
    y, logits = data
    temperature = fit_temperature(logits, y)
    path = tmp_path / "reliability.png"
    returned = plots.plot_reliability(
        y, softmax(logits), path, probs_after=apply_temperature(logits, temperature), temperature=temperature
    )
    _assert_png(path, returned)


def test_binary_reliability_plot(tmp_path, data):
    y, logits = data
    path = tmp_path / "reliability_mel.png"
    _assert_png(path, plots.plot_reliability((y == 0).astype(int), softmax(logits)[:, 0], path, n_bins=5))


def test_per_class_f1_plot(tmp_path, data):
    y, logits = data
    path = tmp_path / "f1.png"
    _assert_png(path, plots.plot_per_class_f1(y, logits.argmax(1), path, n_boot=50))


def test_plot_replaces_an_existing_file(tmp_path, data):
    y, logits = data
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    plots.plot_confusion_matrix(y, logits.argmax(1), path)
    assert path.read_bytes().startswith(PNG_MAGIC)
