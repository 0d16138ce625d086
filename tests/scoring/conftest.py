"""Fixtures of the scoring tests: one random-weight bundle and a small archive with a few bad files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dermascan.testing import random_bundle, synthetic_jpeg

#: Files of the archive that must become error rows, and a word of their error.
BAD = {
    "clinic_b/2026/not_a_jpeg.jpg": "not an image",
    "clinic_b/truncated.jpg": "truncated",
    "clinic_a/tiny.png": "too small",
}


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same bundle the inference tests use (reuse=True): exported once per session.
    return random_bundle(tmp_path_factory.getbasetemp() / "shared-resnet18-64", "resnet18", 64, reuse=True)


def write_archive(root: Path, n_good: int = 22) -> Path:
    """Two clinics' folders, nested, with JPEGs of several sizes, three bad images and a non-image file."""
    for i in range(n_good):
        clinic = "clinic_a" if i % 2 else "clinic_b/2026"
        path = root / clinic / f"ISIC_{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synthetic_jpeg(72 + 8 * (i % 5), 64 + 6 * (i % 3), seed=i))
    good = synthetic_jpeg(96, 80, seed=99)
    (root / "clinic_b/2026/not_a_jpeg.jpg").write_bytes(b"a text file with a .jpg name")
    (root / "clinic_b/truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "clinic_a/tiny.png").write_bytes(synthetic_jpeg(8, 8, seed=3))
    (root / "clinic_a/metadata.csv").write_text("image_id,age\n")  # not an image: never listed
    return root


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("archive"))


def read_rows(path: Path) -> list[dict]:
    """The output's rows sorted by path (the Ray engine writes them in completion order)."""
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: r["path"])
