"""Tests of the synthetic dermoscopy generator: layout, determinism, labels, masks, validation, rates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermascan.data import synthetic
from dermascan.data.synthetic import (
    HAM10000_PRIORS,
    METADATA_COLUMNS,
    SynthConfig,
    generate_dataset,
    image_metadata,
    metadata_table,
    render_image,
)
from dermascan.data.synthetic import writer as synthetic_writer
from dermascan.taxonomy import CLASSES

UNIFORM = dict.fromkeys(CLASSES, 1.0)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig, pd.DataFrame]:
    config = SynthConfig(n=48, size=32, seed=5, class_priors=UNIFORM, multi_image_lesion_rate=0.4, workers=1)
    root = tmp_path_factory.mktemp("synth") / "ds"
    return root, config, generate_dataset(root, config, progress=False)


def test_layout_matches_isic_task3(dataset: tuple[Path, SynthConfig, pd.DataFrame]) -> None:
    root, config, meta = dataset
    assert sorted(p.name for p in root.iterdir()) == [
        "ISIC2018_Task3_GroundTruth.csv", "images", "masks", "metadata.csv",
    ]  # fmt: skip
    ids = [f"SYN_{i:07d}" for i in range(config.n)]
    assert sorted(p.stem for p in (root / "images").glob("*.jpg")) == ids
    assert sorted(p.name for p in (root / "masks").iterdir()) == [f"{i}_segmentation.png" for i in ids]

    truth_text = (root / "ISIC2018_Task3_GroundTruth.csv").read_text().splitlines()
    assert truth_text[0] == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
    assert set(truth_text[1].split(",")[1:]) == {"1.0", "0.0"}
    truth = pd.read_csv(root / "ISIC2018_Task3_GroundTruth.csv")
    assert list(truth["image"]) == ids
    onehot = truth[list(CLASSES)].to_numpy()
    assert onehot.dtype == np.float64 and np.all(onehot.sum(axis=1) == 1.0)

    on_disk = pd.read_csv(root / "metadata.csv")
    assert tuple(on_disk.columns) == METADATA_COLUMNS
    assert list(on_disk["image_id"]) == ids
    assert [CLASSES[k] for k in onehot.argmax(axis=1)] == list(on_disk["dx"].str.upper())
    assert set(on_disk["dx"]) == {c.lower() for c in CLASSES}, "all 7 classes appear"
    assert on_disk["lesion_id"].str.fullmatch(r"SYNL_\d{7}").all()
    assert (on_disk["age"] % 5 == 0).all() and on_disk["age"].dtype == float
    assert set(on_disk["sex"]) <= {"male", "female"}
    assert on_disk["fitzpatrick"].between(1, 6).all()
    assert (on_disk["diameter_mm"] > 0).all()
    for flag in synthetic.NUISANCES:
        assert set(on_disk[flag]) <= {0, 1}
    pd.testing.assert_frame_equal(on_disk, meta.reset_index(drop=True), check_dtype=False)


def test_images_and_masks_are_paired(dataset: tuple[Path, SynthConfig, pd.DataFrame]) -> None:
    from PIL import Image

    root, config, meta = dataset
    for name in meta["image_id"]:
        image = Image.open(root / "images" / f"{name}.jpg")
        mask = Image.open(root / "masks" / f"{name}_segmentation.png")
        assert image.mode == "RGB" and image.size == (config.size, config.size)
        assert mask.mode == "L" and mask.size == image.size
        values = set(np.unique(np.asarray(mask)))
        assert values <= {0, 255} and 255 in values, name


def test_lesions_with_several_images_share_the_lesion(dataset: tuple[Path, SynthConfig, pd.DataFrame]) -> None:
    _, _, meta = dataset
    per_lesion = meta.groupby("lesion_id")
    assert (per_lesion.size() > 1).any()
    shared = ["dx", "age", "sex", "localization", "fitzpatrick", "diameter_mm"]
    assert (per_lesion[shared].nunique() == 1).all().all()


def test_same_config_gives_identical_bytes_and_seed_changes_them(tmp_path: Path) -> None:
    config = SynthConfig(n=40, size=32, seed=1, workers=1)
    generate_dataset(tmp_path / "a", config, progress=False)
    generate_dataset(tmp_path / "b", SynthConfig(n=40, size=32, seed=1, workers=2), progress=False)
    generate_dataset(tmp_path / "c", SynthConfig(n=40, size=32, seed=2, workers=1), progress=False)
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert a == b, "the number of workers must not change a byte"
    assert a.keys() == c.keys() and a != c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"], "no temporary folder left"


def test_image_depends_only_on_seed_and_index() -> None:
    small, large = SynthConfig(n=10, size=48, seed=3), SynthConfig(n=50, size=48, seed=3, workers=1)
    img_a, mask_a, row_a = render_image(small, 3)
    img_b, mask_b, row_b = render_image(large, 3)
    assert np.array_equal(np.asarray(img_a), np.asarray(img_b))
    assert np.array_equal(mask_a, mask_b) and mask_a.dtype == bool and mask_a.shape == (48, 48)
    assert row_a == row_b == image_metadata(large, 3)
    assert not np.array_equal(np.asarray(render_image(SynthConfig(n=10, size=48, seed=4), 3)[0]), np.asarray(img_a))
    with pytest.raises(IndexError):
        render_image(small, 10)


def test_mask_covers_the_drawn_lesion() -> None:
    config = SynthConfig(
        n=12, size=64, seed=0, nuisance_rate=0.0, fitzpatrick_mix=(1, 0, 0, 0, 0, 0),
        class_priors={c: float(c in ("NV", "MEL")) for c in CLASSES},
    )  # fmt: skip
    for i in range(config.n):
        image, mask, _ = render_image(config, i)
        luminance = np.asarray(image, dtype=float).mean(axis=2)
        assert 0 < mask.mean() < 0.9
        assert luminance[mask].mean() < luminance[~mask].mean() - 10, i


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0}, "n"),
        ({"size": 4}, "size"),
        ({"seed": -1}, "seed"),
        ({"class_priors": {"MEL": 0.5, "NV": 0.5}}, "class_priors"),
        ({"class_priors": {**UNIFORM, "XYZ": 1.0}}, "class_priors"),
        ({"class_priors": {**UNIFORM, "NV": -0.2}}, "class_priors"),
        ({"class_priors": dict.fromkeys(CLASSES, 0.0)}, "class_priors"),
        ({"class_priors": {**UNIFORM, "DF": float("nan")}}, "class_priors"),
        ({"fitzpatrick_mix": (1.0, 1.0)}, "fitzpatrick_mix"),
        ({"atypical_nevus_rate": 1.5}, "atypical_nevus_rate"),
        ({"feature_overlap": -0.1}, "feature_overlap"),
        ({"dermoscopes": ("dermlite", "polaroid")}, "dermoscopes"),
        ({"dermoscopes": ()}, "dermoscopes"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"workers": -1}, "workers"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        SynthConfig(**kwargs)


def test_priors_and_documented_correlations_hold() -> None:
    meta = metadata_table(SynthConfig(n=3000, seed=11))
    share = meta["dx"].str.upper().value_counts(normalize=True)
    for code, p in HAM10000_PRIORS.items():
        assert abs(share.get(code, 0.0) - p) < max(0.03, 0.3 * p), code
    skewed = metadata_table(
        SynthConfig(n=1500, seed=2, class_priors={**dict.fromkeys(CLASSES, 0.0), "DF": 1, "VASC": 3})
    )
    assert abs((skewed["dx"] == "vasc").mean() - 0.75) < 0.05 and set(skewed["dx"]) == {"df", "vasc"}
    # Ink marks go with biopsy referral (MEL/BCC/AKIEC), the shortcut the audits must find.
    referred = meta["dx"].isin(["mel", "bcc", "akiec"])
    assert meta.loc[referred, "ink"].mean() > 3 * meta.loc[~referred, "ink"].mean()
    # Fitzpatrick skewed to I-III, with V-VI present for the fairness audit.
    assert (meta["fitzpatrick"] <= 3).mean() > 0.6 and (meta["fitzpatrick"] >= 5).mean() > 0.05
    assert meta.groupby("lesion_id").size().max() <= 3


def test_nuisance_rate_zero_and_forced_device() -> None:
    config = SynthConfig(n=200, seed=0, nuisance_rate=0.0, dermoscopes=("newdevice",))
    meta = metadata_table(config)
    assert (meta[list(synthetic.NUISANCES)] == 0).all().all()
    assert set(meta["dermoscope"]) == {"newdevice"}
    # Same lesion, same capture, new device: the colour cast changes the pixels.
    old = np.asarray(render_image(SynthConfig(n=1, size=32, dermoscopes=("dermlite",)), 0)[0], dtype=float)
    new = np.asarray(render_image(SynthConfig(n=1, size=32, dermoscopes=("newdevice",)), 0)[0], dtype=float)
    assert np.abs(old.mean(axis=(0, 1)) - new.mean(axis=(0, 1))).max() > 5


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = synthetic_writer._write_chunk

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_writer, "_write_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "ds", SynthConfig(n=20, size=32, workers=1), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    config = SynthConfig(n=4, size=32, workers=1)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(out, config, progress=False)
    assert (out / "keep.txt").exists()
    generate_dataset(out, config, progress=False, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "metadata.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
