from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from tests.conftest import write_ham_image_folder

from dermascan.data.io import ImageError, load_image
from dermascan.data.readers import DatasetError, read_dataset
from dermascan.taxonomy import CLASSES

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "ham10000-sample"


def test_reads_isic_with_ham_metadata(tiny_isic: Path) -> None:
    index = read_dataset(tiny_isic)
    assert index.layout == "isic"
    assert len(index) == 6 * len(CLASSES)
    assert index.class_counts() == {c: 6 for c in CLASSES}
    assert {"image_id", "path", "label", "dx", "lesion_id", "age", "sex", "localization"} <= set(index.frame.columns)
    assert (index.frame["label"] == index.frame["dx"].map(CLASSES.index)).all()
    assert index.frame["lesion_id"].nunique() < len(index)  # some lesions have two images
    assert index.has_lesion_ids


def test_real_ham10000_sample_is_read_when_present() -> None:
    if not SAMPLE.is_dir():
        pytest.skip("shared/data/ham10000-sample is not beside this checkout")
    index = read_dataset(SAMPLE)
    assert len(index) == 51
    assert index.class_counts()["BKL"] == 9 and index.class_counts()["MEL"] == 7
    assert index.frame["lesion_id"].str.startswith("HAM_").all()


def test_without_lesion_ids_warns_and_uses_image_ids(tmp_path: Path) -> None:
    from tests.conftest import write_tiny_isic

    root = write_tiny_isic(tmp_path / "d", per_class=2, ham_metadata=False)
    with pytest.warns(UserWarning, match="lesion leakage"):
        index = read_dataset(root)
    assert (index.frame["lesion_id"] == index.frame["image_id"]).all()


def test_missing_image_names_the_id(tiny_isic: Path) -> None:
    (tiny_isic / "images" / "ISIC_0000003.jpg").unlink()
    with pytest.raises(DatasetError, match="ISIC_0000003"):
        read_dataset(tiny_isic)
    index = read_dataset(tiny_isic, skip_bad=True)
    assert len(index) == 6 * len(CLASSES) - 1
    assert index.skipped == [("ISIC_0000003", "image file missing")]


def test_truncated_image_names_the_file(tiny_isic: Path) -> None:
    path = tiny_isic / "images" / "ISIC_0000005.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="ISIC_0000005"):
        read_dataset(tiny_isic)
    index = read_dataset(tiny_isic, skip_bad=True)
    assert [s[0] for s in index.skipped] == ["ISIC_0000005"]


def test_not_an_image(tiny_isic: Path) -> None:
    (tiny_isic / "images" / "ISIC_0000001.jpg").write_text("hello")
    with pytest.raises(DatasetError, match="ISIC_0000001.*not an image"):
        read_dataset(tiny_isic)


def test_duplicate_id_names_id_and_line(tiny_isic: Path) -> None:
    gt = pd.read_csv(tiny_isic / "ISIC2018_Task3_GroundTruth.csv")
    pd.concat([gt, gt.iloc[[2]]]).to_csv(tiny_isic / "ISIC2018_Task3_GroundTruth.csv", index=False)
    with pytest.raises(DatasetError, match=r"duplicate image ids: 'ISIC_0000002' \(line 44\)"):
        read_dataset(tiny_isic)
    assert len(read_dataset(tiny_isic, skip_bad=True)) == len(gt)


def test_row_not_one_hot_names_line(tiny_isic: Path) -> None:
    gt = pd.read_csv(tiny_isic / "ISIC2018_Task3_GroundTruth.csv")
    gt.loc[4, "NV"] = 1.0  # row 4 was MEL: now two ones
    gt.to_csv(tiny_isic / "ISIC2018_Task3_GroundTruth.csv", index=False)
    with pytest.raises(DatasetError, match="line 6.*ISIC_0000004.*not one-hot"):
        read_dataset(tiny_isic)


def test_unknown_class_column(tiny_isic: Path) -> None:
    gt = pd.read_csv(tiny_isic / "ISIC2018_Task3_GroundTruth.csv").rename(columns={"VASC": "SCC"})
    gt.to_csv(tiny_isic / "ISIC2018_Task3_GroundTruth.csv", index=False)
    with pytest.raises(DatasetError, match=r"unknown: \['SCC'\].*missing: \['VASC'\]"):
        read_dataset(tiny_isic)


def test_metadata_dx_disagreeing_with_ground_truth(tiny_isic: Path) -> None:
    meta = pd.read_csv(tiny_isic / "HAM10000_metadata.csv")
    meta.loc[0, "dx"] = "nv"
    meta.to_csv(tiny_isic / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DatasetError, match="ISIC_0000000.*disagrees"):
        read_dataset(tiny_isic)


def test_ham10000_metadata_only_layout(tiny_isic: Path) -> None:
    (tiny_isic / "ISIC2018_Task3_GroundTruth.csv").unlink()
    index = read_dataset(tiny_isic)
    assert index.layout == "ham10000"
    assert index.class_counts() == {c: 6 for c in CLASSES}


def test_official_nested_layout(tmp_path: Path, tiny_isic: Path) -> None:
    root = tmp_path / "official"
    (root / "ISIC2018_Task3_Training_GroundTruth").mkdir(parents=True)
    shutil.copytree(tiny_isic / "images", root / "ISIC2018_Task3_Training_Input")
    shutil.copy(
        tiny_isic / "ISIC2018_Task3_GroundTruth.csv",
        root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv",
    )
    with pytest.warns(UserWarning, match="lesion"):
        index = read_dataset(root)
    assert len(index) == 42


def test_image_folder_with_aliases(tmp_path: Path) -> None:
    for name in ("mel", "Melanoma_extra_ignored", "nevus", "BCC"):
        (tmp_path / name).mkdir()
    for i, name in enumerate(("mel", "nevus", "nevus", "BCC")):
        Image.new("RGB", (32, 32), (i * 40, 80, 90)).save(tmp_path / name / f"img{i}.jpg")
    with pytest.warns(UserWarning, match="lesion"):
        index = read_dataset(tmp_path)
    assert index.layout == "imagefolder"
    assert index.class_counts() == {"MEL": 1, "NV": 2, "BCC": 1, "AKIEC": 0, "BKL": 0, "DF": 0, "VASC": 0}


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dermascan synth"):
        read_dataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nope")


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_load_image_converts_modes_to_rgb(tmp_path: Path, mode: str) -> None:
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_load_image_applies_exif_rotation(tmp_path: Path) -> None:
    img = Image.new("RGB", (60, 20), (10, 20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (20, 60)


def test_load_image_rejects_tiny(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "t.png")
    with pytest.raises(ImageError, match="too small"):
        load_image(tmp_path / "t.png")


def test_pre_resized_cache(tiny_isic: Path, tmp_path: Path) -> None:
    from dermascan.data.datasets import cache_images

    frame = read_dataset(tiny_isic).frame
    cached = cache_images(frame, tmp_path / "cache", short_side=20)
    assert all(Path(p).parent == tmp_path / "cache" / "short20" for p in cached["path"])
    assert Image.open(cached["path"].iat[0]).size == (20, 20)
    mtimes = [Path(p).stat().st_mtime_ns for p in cached["path"]]
    again = cache_images(frame, tmp_path / "cache", short_side=20)  # second call reuses the files
    assert list(again["path"]) == list(cached["path"])
    assert [Path(p).stat().st_mtime_ns for p in again["path"]] == mtimes


def test_image_folder_reads_a_loosely_named_metadata_file_and_says_which(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_ham_image_folder(tmp_path / "ham")
    with caplog.at_level("WARNING", logger="dermascan.data.metadata"), warnings.catch_warnings():
        warnings.simplefilter("error")  # lesion ids are all there: no "no lesion_id" warning
        index = read_dataset(root)
    assert index.layout == "imagefolder" and index.has_lesion_ids
    assert index.frame["lesion_id"].str.startswith("HAM_").all()
    assert index.frame["lesion_id"].nunique() < len(index)  # the grouping is kept
    assert {"age", "sex", "localization"} <= set(index.frame.columns)
    assert "HAM10000_metadata_sample.csv" in caplog.text


def test_metadata_option_takes_a_file_from_anywhere(tmp_path: Path) -> None:
    root = write_ham_image_folder(tmp_path / "ham", metadata_name=None)
    meta = pd.read_csv(tmp_path / "ham-isic" / "HAM10000_metadata.csv")
    elsewhere = tmp_path / "elsewhere" / "lesions.csv"
    elsewhere.parent.mkdir()
    meta.to_csv(elsewhere, index=False)
    with pytest.warns(UserWarning, match=r"14 of 14 image\(s\) have no lesion_id.*--metadata FILE"):
        read_dataset(root)
    index = read_dataset(root, metadata=elsewhere)
    assert index.has_lesion_ids and index.frame["lesion_id"].str.startswith("HAM_").all()
    # The same option on an ISIC folder replaces the folder's own metadata file.
    isic = tmp_path / "ham-isic"
    meta.assign(age=99.0).to_csv(elsewhere, index=False)
    assert (read_dataset(isic, metadata=elsewhere).frame["age"] == 99.0).all()
    with pytest.raises(DatasetError, match="metadata file .*missing.csv does not exist"):
        read_dataset(root, metadata=tmp_path / "missing.csv")


def test_several_loose_metadata_files_is_an_error_unless_one_is_chosen(tmp_path: Path) -> None:
    root = write_ham_image_folder(tmp_path / "ham")
    shutil.copy(root / "HAM10000_metadata_sample.csv", root / "old_metadata.csv")
    with pytest.raises(DatasetError, match="several metadata files.*--metadata FILE"):
        read_dataset(root)
    assert read_dataset(root, metadata=root / "old_metadata.csv").has_lesion_ids
    # An exact name wins over the loose ones (the documented preference).
    shutil.copy(root / "old_metadata.csv", root / "metadata.csv")
    assert read_dataset(root).has_lesion_ids


def test_ham_layout_from_a_loosely_named_metadata_file(tiny_isic: Path) -> None:
    (tiny_isic / "ISIC2018_Task3_GroundTruth.csv").unlink()
    (tiny_isic / "HAM10000_metadata.csv").rename(tiny_isic / "HAM10000_metadata_sample.csv")
    index = read_dataset(tiny_isic)
    assert index.layout == "ham10000" and index.has_lesion_ids
    assert index.class_counts() == {c: 6 for c in CLASSES}
