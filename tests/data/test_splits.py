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


@pytest.mark.filterwarnings("ignore::dermascan.data.splits.SplitWarning")  # 50 lesions: rare classes are short
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


def _tiny_classes(lesions_per_class: dict[str, list[int]]) -> pd.DataFrame:
    """A frame with exactly the given lesions per class, each entry the number of images of one lesion."""
    rows = []
    for code, sizes in lesions_per_class.items():
        for j, size in enumerate(sizes):
            for _ in range(size):
                rows.append({"image_id": f"I{len(rows):04d}", "lesion_id": f"{code}_{j}", "dx": code})
    return pd.DataFrame(rows)


def _images_per_split(frame: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    merged = splits.merge(frame[["image_id", "dx"]], on="image_id")
    return (
        merged.groupby(["dx", "split"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=["train", "val", "test"], fill_value=0)
    )


def test_a_class_with_one_lesion_goes_to_train_and_is_named_in_a_warning() -> None:
    from dermascan.data.splits import SplitWarning

    frame = pd.concat([_frame(300), _tiny_classes({"DF": [1]}).assign(image_id=lambda f: "DF" + f["image_id"])])
    frame = frame[(frame["dx"] != "DF") | frame["lesion_id"].str.startswith("DF_")]  # DF: one lesion, one image
    with pytest.warns(SplitWarning, match=r"class DF has only 1 lesion\(s\) \(1 image\(s\)\): no test or val image"):
        splits = make_splits(frame, 0.15, 0.15, seed=0)
    counts = _images_per_split(frame, splits)
    assert counts.loc["DF"].to_dict() == {"train": 1, "val": 0, "test": 0}
    assert (counts.loc[["MEL", "NV", "BKL"]] > 0).all().all()  # big classes are everywhere


def test_two_lesions_give_train_one_and_test_the_other() -> None:
    """The case seen: AKIEC with 2 lesions of 3 images each had 0 training images; VASC with 2 went to test/val."""
    from dermascan.data.splits import SplitWarning

    frame = _tiny_classes({"NV": [1] * 40, "MEL": [2] * 10, "AKIEC": [3, 3], "VASC": [1, 2]})
    with pytest.warns(SplitWarning) as record:
        splits = make_splits(frame, 0.15, 0.15, seed=0)
    counts = _images_per_split(frame, splits)
    assert counts.loc["AKIEC"].to_dict() == {"train": 3, "val": 0, "test": 3}
    assert counts.loc["VASC", "train"] >= 1 and counts.loc["VASC", "test"] >= 1 and counts.loc["VASC", "val"] == 0
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert messages[0].startswith("class AKIEC has only 2 lesion(s) (6 image(s)): no val image")
    assert "train 3, val 0, test 3" in messages[0]
    assert messages[1].startswith("class VASC has only 2 lesion(s) (3 image(s)): no val image")


@pytest.mark.parametrize("seed", range(12))
def test_small_classes_always_train_then_test_then_val_without_leakage(seed: int) -> None:
    import warnings

    # 1 to 5 lesions per class, lopsided sizes: one large lesion used to swallow train's share.
    sizes = {
        code: [1 + (j * 7 + k * 3 + seed) % 4 for j in range(1 + (k + seed) % 5)] for k, code in enumerate(CLASSES)
    }
    sizes["MEL"] = [1, 1, 5]  # the old dealer gave test two lesions, val the big one, train nothing
    frame = _tiny_classes(sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = make_splits(frame, 0.15, 0.15, seed=seed)
        again = make_splits(frame, 0.15, 0.15, seed=seed)
    pd.testing.assert_frame_equal(splits, again)
    check_no_leakage(splits)
    assert (splits.groupby("lesion_id")["split"].nunique() == 1).all() and splits["split"].notna().all()
    counts = _images_per_split(frame, splits)
    for code, lesions in sizes.items():
        assert counts.loc[code, "train"] > 0, code
        if len(lesions) >= 2:
            assert counts.loc[code, "test"] > 0, code
        if len(lesions) >= 3:
            assert counts.loc[code, "val"] > 0, code


def test_plenty_of_lesions_split_as_before() -> None:
    """Where every class fills its shares, the reserved training lesion changes nothing: same assignment as
    dealing every lesion to test, then val, then train (the rule the demo's published figures were made with)."""
    import warnings

    def old_rule(frame: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
        lesion_dx = frame.groupby("lesion_id")["dx"].agg(lambda s: s.value_counts().index[0])
        size = frame.groupby("lesion_id").size()
        out = {}
        for k, code in enumerate(CLASSES):
            lesions = np.array(sorted(lesion_dx.index[lesion_dx == code]))
            lesions = lesions[np.random.default_rng([seed, k]).permutation(len(lesions))]
            total = int(size[lesions].sum())
            targets = {"test": max(test_fraction * total, 1.0), "val": max(val_fraction * total, 1.0)}
            filled = {"test": 0, "val": 0}
            for lesion in lesions:
                split = next((s for s in ("test", "val") if filled[s] < targets[s] - 1e-9), "train")
                filled[split] = filled.get(split, 0) + int(size[lesion])
                out[lesion] = split
        return frame["lesion_id"].map(out).reset_index(drop=True)

    for frame, vf, tf in ((_frame(600), 0.15, 0.15), (_frame(1000, seed=2), 0.3, 0.3)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no class is short: no warning
            splits = make_splits(frame, vf, tf, seed=0)
        pd.testing.assert_series_equal(splits["split"], old_rule(frame, vf, tf, 0), check_names=False)
