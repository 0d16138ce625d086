"""Error analysis: missed melanomas, size sources, nuisance tables, findings and the written files (tiny frames)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermascan.decision import decide
from dermascan.evaluation import errors
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

THRESHOLD = 0.3


def make_frame(labels: np.ndarray, p_mel: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Predictions with a given p(MEL): the rest goes mostly to the true class (NV for a melanoma)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    probs = np.zeros((n, len(CLASSES)))
    probs[:, MELANOMA_INDEX] = p_mel
    main = np.where(labels == MELANOMA_INDEX, CLASSES.index("NV"), labels)
    rest = rng.dirichlet(np.ones(len(CLASSES) - 1), n) * 0.3  # (N, 6): a little noise on the other classes
    probs[:, 1:] = rest
    probs[np.arange(n), main] += 0.7
    probs[:, 1:] *= ((1 - p_mel) / probs[:, 1:].sum(axis=1))[:, None]
    frame = pd.DataFrame(probs, columns=CLASSES)
    frame.insert(0, "image_id", [f"ISIC_{i:07d}" for i in range(n)])
    frame["label"] = labels
    frame["dx"] = [CLASSES[i] for i in labels]
    frame["pred"] = decide(probs, THRESHOLD)
    return frame


def scores(rng: np.random.Generator, labels: np.ndarray, miss: np.ndarray, false_alarm: np.ndarray) -> np.ndarray:
    """p(MEL): melanomas missed with probability ``miss``, benign lesions flagged with ``false_alarm``."""
    u = rng.random(len(labels))
    mel = labels == MELANOMA_INDEX
    high, low = rng.uniform(0.35, 0.95, len(labels)), rng.uniform(0.01, 0.25, len(labels))
    return np.where(mel, np.where(u < miss, low, high), np.where(u < false_alarm, high, low))


def load_strict(path: Path) -> dict:
    def no_constant(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constant)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 400
    labels = rng.choice(len(CLASSES), n, p=[0.4, 0.3, 0.1, 0.05, 0.1, 0.03, 0.02])
    diameter = rng.choice([4.0, 8.0, 14.0], n)
    small = diameter < 6
    p_mel = scores(rng, labels, np.where(small, 0.6, 0.05), np.full(n, 0.05))
    df = make_frame(labels, p_mel)
    df["diameter_mm"] = diameter
    df["age"] = rng.integers(20, 90, n).astype(float)
    df.loc[3, "age"] = np.nan  # a missing value must stay strict JSON
    return df


def test_false_negatives_are_exactly_the_missed_melanomas(frame):
    fn = errors.melanoma_false_negatives(frame, THRESHOLD)
    expected = frame.index[(frame["label"] == MELANOMA_INDEX) & (frame["MEL"] < THRESHOLD)]
    assert sorted(fn.index) == sorted(expected)
    assert fn["p_melanoma"].is_monotonic_increasing  # most confidently missed first
    assert set(fn["predicted"]) <= set(CLASSES) - {"MEL"}
    row = fn.iloc[0]
    assert row["p_predicted"] == pytest.approx(frame.loc[row.name, row["predicted"]])


def test_analyze_errors_writes_strict_json_gallery_and_html(frame, tmp_path):
    result = errors.analyze_errors(frame, THRESHOLD, tmp_path / "out", top_k=4)
    out = tmp_path / "out"
    assert load_strict(out / "errors.json") == result
    json.dumps(result, allow_nan=False)
    assert (out / "gallery.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "errors.html").read_text()
    assert "Missed melanomas" in page and "gallery.png" in page
    fn_ids = {f["image_id"] for f in result["false_negatives"]}
    assert result["n_false_negatives"] == len(fn_ids) == int(((frame["label"] == 0) & (frame["MEL"] < THRESHOLD)).sum())
    assert len(result["top_k"]) == 4 and set(result["top_k"]) <= fn_ids
    first = result["false_negatives"][0]
    assert first["image_id"] == result["top_k"][0]
    assert {"age", "diameter_mm"} <= set(first["metadata"])
    assert "path" not in first["metadata"] and "MEL" not in first["metadata"]
    assert result["skipped"]["ink"] == "no 'ink' column in the metadata"


def test_size_bins_from_diameter_and_a_finding_on_small_lesions(frame, tmp_path):
    groups, info = errors.lesion_size_groups(pd.DataFrame({"diameter_mm": [3.0, 5.99, 6.0, 10.0, 10.5, np.nan]}))
    assert list(groups) == ["small", "small", "medium", "medium", "large", None]
    assert info["source"] == "diameter_mm" and info["n_unknown"] == 1

    result = errors.analyze_errors(frame, THRESHOLD, tmp_path)
    size = result["by_size"]
    assert size["source"] == "diameter_mm"
    small, large = size["groups"]["small"]["sensitivity"], size["groups"]["large"]["sensitivity"]
    assert small["value"] < large["value"] and small["hi"] < large["lo"]
    found = [f for f in result["findings"] if f.startswith("Lesion size: sensitivity")]
    assert found and "for small lesions (< 6 mm)" in found[0]
    assert sum(size["missed_by_size"].values()) == result["n_false_negatives"]


def _write_mask(path: Path, side: int, size: int = 20) -> str:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[:side, :side] = 255
    Image.fromarray(mask).save(path)
    return str(path)


def test_size_from_masks_when_no_diameter(tmp_path):
    sides = [2, 3, 8, 9, 16, 17]  # area fractions 0.01 .. 0.72: two per tertile
    df = pd.DataFrame({"mask_path": [_write_mask(tmp_path / f"m{i}.png", s) for i, s in enumerate(sides)]})
    df.loc[len(df), "mask_path"] = str(tmp_path / "missing.png")  # unreadable: unknown, no crash
    groups, info = errors.lesion_size_groups(df)
    assert info["source"] == "mask" and info["n_unknown"] == 1
    assert list(groups[:6]) == ["small", "small", "medium", "medium", "large", "large"]
    assert errors.mask_area_fraction(tmp_path / "m4.png") == pytest.approx(256 / 400)


def _blob_image(radius: int, size: int = 64, corners: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size, 3), (225, 190, 170), dtype=np.float64)  # light skin
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2] = (70, 45, 35)  # dark lesion
    if corners:  # a dermoscope vignette: dark rim beyond the lens field
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 >= (0.62 * size) ** 2] = (10, 10, 10)
    noise = np.random.default_rng(0).normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("corners", [False, True])
def test_otsu_fallback_finds_the_dark_blob(corners):
    fraction = errors.estimate_lesion_fraction(_blob_image(12, corners=corners))
    assert fraction == pytest.approx(math.pi * 12**2 / 64**2, abs=0.03)


def test_otsu_threshold_splits_two_levels_and_is_nan_when_flat():
    values = np.r_[np.full(50, 10.0), np.full(50, 200.0)]
    assert 10.0 <= errors.otsu_threshold(values) < 200.0
    assert math.isnan(errors.otsu_threshold(np.ones(10)))
    assert math.isnan(errors.estimate_lesion_fraction(np.full((8, 8, 3), 128, dtype=np.uint8)))


def test_size_from_images_when_no_diameter_or_mask(tmp_path):
    radii = [4, 5, 10, 11, 18, 19]
    paths = []
    for i, r in enumerate(radii):
        Image.fromarray(_blob_image(r)).save(tmp_path / f"img{i}.png")
        paths.append(f"img{i}.png")  # relative to image_root
    labels = np.array([0, 1, 0, 1, 0, 1])
    df = make_frame(labels, np.array([0.1, 0.1, 0.5, 0.1, 0.5, 0.1]))
    df["path"] = paths
    groups, info = errors.lesion_size_groups(df, image_root=tmp_path)
    assert info["source"] == "image"
    assert list(groups) == ["small", "small", "medium", "medium", "large", "large"]

    seen = []

    def heatmap(path: str) -> np.ndarray:
        seen.append(Path(path).name)
        return np.zeros((8, 8, 3), dtype=np.uint8)

    result = errors.analyze_errors(df, THRESHOLD, tmp_path / "out", heatmap_fn=heatmap, image_root=tmp_path)
    assert result["by_size"]["source"] == "image"
    assert seen == ["img0.png"] and result["gallery"]["heatmaps"] is True  # the one missed melanoma


def test_a_failing_heatmap_is_recorded_not_raised(frame, tmp_path):
    def broken(path: str) -> np.ndarray:
        raise RuntimeError("no hook on this layer")

    frame = frame.assign(path="nowhere.jpg")
    result = errors.analyze_errors(frame, THRESHOLD, tmp_path, heatmap_fn=broken, top_k=2)
    assert set(result["gallery"]["heatmap_errors"]) == set(result["top_k"])
    assert "no hook" in next(iter(result["gallery"]["heatmap_errors"].values()))


def test_ink_marks_lower_specificity_is_found(tmp_path):
    rng = np.random.default_rng(2)
    n = 600
    labels = rng.choice(len(CLASSES), n, p=[0.2, 0.5, 0.1, 0.05, 0.1, 0.03, 0.02])
    ink = rng.random(n) < 0.4
    p_mel = scores(rng, labels, np.full(n, 0.1), np.where(ink, 0.4, 0.05))  # a shortcut: ink looks malignant
    df = make_frame(labels, p_mel)
    df["ink"] = ink.astype(int)
    df["dermoscope"] = rng.choice(["dermlite", "heine"], n)
    df["hair"] = np.where(rng.random(n) < 0.5, "yes", "no")
    result = errors.analyze_errors(df, THRESHOLD, tmp_path)
    ink_groups = result["by_nuisance"]["ink"]["groups"]
    with_ink, without = ink_groups["present"]["specificity"], ink_groups["absent"]["specificity"]
    assert with_ink["value"] < without["value"] and with_ink["hi"] < without["lo"]
    assert any(f.startswith("Ink marks: specificity") and "with vs" in f for f in result["findings"])
    assert set(result["by_nuisance"]["hair"]["groups"]) == {"present", "absent"}
    assert set(result["by_dermoscope"]["groups"]) == {"dermlite", "heine"}
    assert not any(f.startswith("Hair:") or f.startswith("Dermoscope:") for f in result["findings"])
    assert result["by_size"]["groups"] == {} and "size" in result["skipped"]


def test_a_group_without_melanoma_is_too_small_to_judge(frame, tmp_path):
    frame["dermoscope"] = "dermlite"
    benign = frame.index[frame["label"] != MELANOMA_INDEX][:15]
    frame.loc[benign, "dermoscope"] = "heine"  # benign only
    result = errors.analyze_errors(frame, THRESHOLD, tmp_path)
    heine = result["by_dermoscope"]["groups"]["heine"]
    assert heine["n_melanoma"] == 0
    assert heine["sensitivity"]["value"] is None and heine["sensitivity"]["status"] == "too_small"
    assert heine["specificity"]["status"] == "ok"
    json.dumps(result, allow_nan=False)


def test_no_missed_melanoma_still_writes_a_gallery(tmp_path):
    df = make_frame(np.array([0, 0, 1, 2]), np.array([0.9, 0.8, 0.1, 0.05]))
    result = errors.analyze_errors(df, THRESHOLD, tmp_path)
    assert result["n_false_negatives"] == 0 and result["top_k"] == []
    assert (tmp_path / "gallery.png").exists()


def test_bad_input_is_refused_with_the_fix(frame, tmp_path):
    with pytest.raises(ValueError, match="pred disagrees with threshold"):
        errors.analyze_errors(frame, 0.5, tmp_path)
    with pytest.raises(ValueError, match="probability column"):
        errors.analyze_errors(frame.drop(columns=["VASC"]), THRESHOLD, tmp_path)
    with pytest.raises(ValueError, match="threshold must be in"):
        errors.analyze_errors(frame, 1.5, tmp_path)
    # Without `pred` the decision rule fills it in; `dx` stands in for `label`.
    result = errors.analyze_errors(frame.drop(columns=["pred", "label"]), THRESHOLD, tmp_path)
    assert result["n"] == len(frame)
