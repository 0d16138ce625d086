"""The dataset fingerprint: one label, one image's bytes, one image more each change it; row order does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import write_tiny_isic

from dermascan.data.fingerprint import SCHEME, dataset_fingerprint
from dermascan.data.readers import read_dataset

GT = "ISIC2018_Task3_GroundTruth.csv"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_tiny_isic(tmp_path / "d", per_class=2, size=24)


def _fp(root: Path) -> str:
    return read_dataset(root, verify_images=False).fingerprint()


def test_one_label_change_changes_the_fingerprint(data: Path) -> None:
    before = _fp(data)
    assert before.startswith(f"{SCHEME}:") and len(before) == len(SCHEME) + 1 + 64
    gt = pd.read_csv(data / GT)
    gt.loc[3, ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]] = [0, 0, 0, 0, 0, 0, 1.0]  # one image relabelled
    gt.to_csv(data / GT, index=False)
    meta = pd.read_csv(data / "HAM10000_metadata.csv")
    meta.loc[3, "dx"] = "vasc"  # the metadata must agree with the ground truth, or the reader refuses the row
    meta.to_csv(data / "HAM10000_metadata.csv", index=False)
    assert _fp(data) != before


def test_image_bytes_count_not_names_or_order(data: Path, tmp_path: Path) -> None:
    before = _fp(data)
    gt = pd.read_csv(data / GT)
    gt.iloc[::-1].to_csv(data / GT, index=False)  # rows read in another order
    assert _fp(data) == before
    moved = tmp_path / "elsewhere"
    shutil.copytree(data, moved)  # same data in another folder
    assert _fp(moved) == before
    image = next((moved / "images").iterdir())
    raw = bytearray(image.read_bytes())
    raw[-3] ^= 0xFF  # one byte of one image (same size: a size-based hash would miss it)
    image.write_bytes(bytes(raw))
    assert _fp(moved) != before


def test_a_repeated_image_id_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="appears twice"):
        dataset_fingerprint([("A", "MEL", f), ("A", "NV", f)])


def test_the_run_records_its_data(tiny_run: Path, synth_small: Path) -> None:
    from dermascan.runs import read_data_record

    record = read_data_record(tiny_run)
    assert record is not None
    assert record["fingerprint"] == read_dataset(synth_small, verify_images=False).fingerprint()
    assert record["n_images"] == 240 and sum(record["splits"].values()) == 240
    assert sum(record["class_counts"].values()) == 240
