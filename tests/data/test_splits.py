from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermascan.data.readers import DatasetError
from dermascan.data.splits import check_no_leakage, combine_official, make_splits, read_splits, write_splits
from dermascan.taxonomy import CLASSES


def _frame(n_lesions: int = 600, seed: int = 0) -> pd.DataFrame:
    """HAM10000-like: skewed classes, 1-4 images per lesion."""
    rng = np.random.default_rng(seed)
    priors = np.array([0.11, 0.67, 0.05, 0.03, 0.11, 0.015, 0.015])
    rows = []
    for lesion in range(n_lesions):
        dx = CLASSES[rng.choice(7, p=priors / priors.sum())]
        for _ in range(rng.integers(1, 5)):
            rows.append({"image_id": f"I{len(rows):05d}", "lesion_id": f"L{lesion:04d}", "dx": dx})
    return pd.DataFrame(rows)


def test_no_lesion_in_two_splits_and_every_image_assigned() -> None:
    frame = _frame()
    splits = make_splits(frame, 0.15, 0.2, seed=1)
    assert len(splits) == len(frame) and set(splits["split"]) == {"train", "val", "test"}
    assert (splits.groupby("lesion_id")["split"].nunique() == 1).all()


def test_class_proportions_hold_per_split() -> None:
    frame = _frame(1500)
    splits = make_splits(frame, 0.15, 0.2, seed=0).merge(frame[["image_id", "dx"]], on="image_id")
    overall = splits["dx"].value_counts(normalize=True)
    for split, expected_share in (("train", 0.65), ("val", 0.15), ("test", 0.2)):
        part = splits[splits["split"] == split]
        assert abs(len(part) / len(splits) - expected_share) < 0.03
        props = part["dx"].value_counts(normalize=True)
        for code in ("MEL", "NV", "BKL"):
            assert abs(props[code] - overall[code]) < 0.03, (split, code)
        assert set(part["dx"]) == set(CLASSES)  # even the rare classes appear everywhere


def test_same_seed_same_split_other_seed_differs() -> None:
    frame = _frame()
    a, b, c = make_splits(frame, seed=3), make_splits(frame, seed=3), make_splits(frame, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert (a["split"] != c["split"]).any()


def test_bad_fractions() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        make_splits(_frame(10), val_fraction=1.2)
    with pytest.raises(ValueError, match="< 1"):
        make_splits(_frame(10), val_fraction=0.5, test_fraction=0.5)


def test_leakage_is_detected_and_round_trip(tmp_path: Path) -> None:
    frame = _frame(50)
    splits = make_splits(frame)
    write_splits(splits, tmp_path / "splits.csv")
    pd.testing.assert_frame_equal(read_splits(tmp_path / "splits.csv", frame), splits)
    leaked = splits.copy()
    lesion = leaked["lesion_id"].value_counts().index[0]  # a lesion with several images
    leaked.loc[leaked.index[leaked["lesion_id"] == lesion][0], "split"] = "test"
    leaked.loc[leaked.index[leaked["lesion_id"] == lesion][1], "split"] = "train"
    with pytest.raises(DatasetError, match="lesion leakage"):
        check_no_leakage(leaked)


def test_official_val_test_are_kept_whole() -> None:
    frame = _frame(300)
    val = frame[frame["lesion_id"] < "L0050"]
    train = frame[frame["lesion_id"] >= "L0050"]
    splits = combine_official(train, val=val)
    assert (splits.loc[splits["image_id"].isin(val["image_id"]), "split"] == "val").all()
    assert set(splits.loc[splits["image_id"].isin(train["image_id"]), "split"]) == {"train", "test"}
