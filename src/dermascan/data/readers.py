"""Readers for dermoscopy datasets on disk: ISIC 2018 Task 3, HAM10000 and ImageFolder trees.

Every reader returns a :class:`DermoscopyIndex`: one row per image with its path, class and metadata.
Readers validate at the boundary and fail with a message that names the file, the row and the fix;
with ``skip_bad=True`` bad rows are left out instead and listed in ``index.skipped``.

Layouts understood (checked in this order):

* ISIC 2018 Task 3: a ``*GroundTruth*.csv`` (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` one-hot) with the
  images in ``images/``, ``*_Input/`` or the folder itself; a metadata file (see below) is joined on
  the image id when present.
* HAM10000 alone: ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``), images in ``images/`` or
  ``HAM10000_images_part_1/`` and ``_part_2/``. Also a folder with no class folders whose only
  label file is a loosely named metadata file (e.g. ``HAM10000_metadata_sample.csv``) or ``metadata``.
* ImageFolder: ``DIR/<class>/*.jpg``, class folder names matched case-insensitively (``mel``,
  ``melanoma``, ``NV``, ``nevus`` ...); a metadata file is joined like ISIC's.

The metadata file (lesion ids, age, sex, site, ...) is, in order of preference: the ``metadata``
argument (``--metadata FILE`` on the command line); ``metadata.csv`` (ours) or
``HAM10000_metadata.csv`` in the dataset folder; else the one file in it whose name matches
``*metadata*.csv`` (any case, e.g. ``HAM10000_metadata_sample.csv``), said in the log. Several such
files and no exact name is an error that asks for ``--metadata``.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dermascan.data.io import ImageError, is_image_file, load_image
from dermascan.data.metadata import find_metadata, join_metadata, read_ham_metadata
from dermascan.data.schema import GROUND_TRUTH_NAME, HAM10000_METADATA_NAME, DatasetError
from dermascan.taxonomy import CLASSES, class_code

log = logging.getLogger(__name__)

_IMAGE_DIR_GLOBS = ("images", "*_Input", "HAM10000_images_part_*", "*images*")


@dataclass
class DermoscopyIndex:
    """A dataset as a table, one row per image.

    Attributes:
        root: the folder it was read from.
        layout: ``isic``, ``ham10000`` or ``imagefolder``.
        frame: columns ``image_id, path, label, dx, lesion_id`` plus whatever metadata the folder has
            (``age, sex, localization, fitzpatrick, dermoscope, diameter_mm`` ...). ``label`` indexes
            :data:`dermascan.taxonomy.CLASSES`; ``dx`` is the class code.
        skipped: ``(item, reason)`` for every row left out by ``skip_bad=True``.
        has_lesion_ids: False when the folder had no ``lesion_id`` (each image is its own lesion).
    """

    root: Path
    layout: str
    frame: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    has_lesion_ids: bool = True

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy(dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = self.frame["dx"].value_counts()
        return {c: int(counts.get(c, 0)) for c in CLASSES}

    def fingerprint(self) -> str:
        """The dataset fingerprint (:func:`dermascan.data.fingerprint.dataset_fingerprint`): ids, labels and the
        sha256 of every image's bytes; identifies the data a model saw."""
        from dermascan.data.fingerprint import dataset_fingerprint

        return dataset_fingerprint(self.frame[["image_id", "dx", "path"]].itertuples(index=False))

    def record(self) -> dict[str, object]:
        """What a run, a bundle and a registered version say about their data: fingerprint, size, classes."""
        return {
            "fingerprint": self.fingerprint(),
            "n_images": len(self.frame),
            "n_lesions": int(self.frame["lesion_id"].nunique()),
            "class_counts": self.class_counts(),
            "layout": self.layout,
            "root": str(self.root),
        }

    def subset(self, image_ids: list[str] | pd.Series) -> DermoscopyIndex:
        """The rows whose ``image_id`` is in ``image_ids``, in that order."""
        frame = self.frame.set_index("image_id").loc[list(image_ids)].reset_index()
        return DermoscopyIndex(self.root, self.layout, frame, [], self.has_lesion_ids)


def read_dataset(
    root: str | Path,
    *,
    metadata: str | Path | None = None,
    skip_bad: bool = False,
    verify_images: bool = True,
    progress: bool = False,
) -> DermoscopyIndex:
    """Read a dataset folder in any supported layout (see the module docstring).

    Args:
        root: the dataset folder.
        metadata: a metadata CSV (``image_id`` plus ``lesion_id``, ``age``, ``sex``, ...) to join on the
            image id, wherever it lies; by default the folder's own is looked for (module docstring).
        skip_bad: leave out bad rows (missing or unreadable images, rows that are not one-hot, repeated
            ids) and list them in ``skipped`` instead of failing.
        verify_images: decode every image once so that a truncated file fails here, naming the file,
            rather than in the middle of a training epoch.
        progress: show a progress bar while verifying.

    Raises:
        DatasetError: the folder is not a dataset, or (without ``skip_bad``) a row is bad.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist (create one with `dermascan synth --out {root}`)")
    if metadata is not None and not Path(metadata).is_file():
        raise DatasetError(f"metadata file {metadata} does not exist (--metadata takes a CSV with an image_id column)")
    skipped: list[tuple[str, str]] = []
    gt = _find_ground_truth(root)
    if gt is not None:
        frame, layout = _read_ground_truth(gt, skip_bad, skipped), "isic"
        meta = Path(metadata) if metadata is not None else find_metadata(root, gt.parent)
        if meta is not None:
            frame = join_metadata(frame, meta, skip_bad, skipped)
    elif (root / HAM10000_METADATA_NAME).is_file() and metadata is None:
        frame, layout = read_ham_metadata(root / HAM10000_METADATA_NAME, skip_bad, skipped), "ham10000"
    elif _class_folders(root):
        frame, layout = _read_image_folder(root, skip_bad, skipped), "imagefolder"
        meta = Path(metadata) if metadata is not None else find_metadata(root)
        if meta is not None:
            frame = join_metadata(frame, meta, skip_bad, skipped)
    elif (labels := Path(metadata) if metadata is not None else find_metadata(root)) is not None:
        # No ground truth and no class folders: the metadata file's dx column is the label, as in HAM10000.
        frame, layout = read_ham_metadata(labels, skip_bad, skipped), "ham10000"
    else:
        raise DatasetError(
            f"no dataset found in {root}: expected {GROUND_TRUTH_NAME} (ISIC 2018 Task 3), "
            f"{HAM10000_METADATA_NAME} (or --metadata FILE with a dx column), or class folders such as "
            f"{root}/MEL/*.jpg. `dermascan synth --out {root}` writes a synthetic one."
        )

    if "path" not in frame.columns:
        frame = _attach_paths(root, frame, skip_bad, skipped)
    has_lesions = "lesion_id" in frame.columns and frame["lesion_id"].notna().all()
    if not has_lesions:
        n_missing = int(frame["lesion_id"].isna().sum()) if "lesion_id" in frame.columns else len(frame)
        warnings.warn(
            f"{root}: {n_missing} of {len(frame)} image(s) have no lesion_id; each is treated as its own "
            "lesion, so splits cannot prevent lesion leakage. Put metadata.csv or HAM10000_metadata.csv "
            "(with lesion_id) in the folder, or pass --metadata FILE.",
            stacklevel=2,
        )
        lesion = frame["lesion_id"] if "lesion_id" in frame.columns else pd.Series(None, index=frame.index)
        frame["lesion_id"] = lesion.astype(object).where(lesion.notna(), frame["image_id"]).astype(str)
    if verify_images:
        frame = _verify_images(frame, skip_bad, skipped, progress)
    if frame.empty:
        raise DatasetError(f"{root}: no usable images ({len(skipped)} skipped: {skipped[:3]})")
    frame["label"] = frame["dx"].map(CLASSES.index).astype(np.int64)
    first = ["image_id", "path", "label", "dx", "lesion_id"]
    frame = frame[first + [c for c in frame.columns if c not in first]].reset_index(drop=True)
    for item, reason in skipped:
        log.warning("skipped %s: %s", item, reason)
    return DermoscopyIndex(root, layout, frame, skipped, has_lesions)


def read_datasets(
    roots: list[str | Path], *, metadata: str | Path | None = None, skip_bad: bool = False, progress: bool = False
) -> DermoscopyIndex:
    """Read several folders as one index (e.g. the ISIC 2018 training, validation and test folders).

    ``metadata`` is joined to every folder (each image takes its own row, if the file has one).

    Raises:
        DatasetError: an image id appears in two folders.
    """
    if not roots:
        raise DatasetError("no dataset folder given: pass --data DIR (`dermascan synth --out DIR` makes one)")
    if len(roots) == 1:
        return read_dataset(roots[0], metadata=metadata, skip_bad=skip_bad, progress=progress)
    parts = [read_dataset(r, metadata=metadata, skip_bad=skip_bad, progress=progress) for r in roots]
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    dup = frame["image_id"][frame["image_id"].duplicated()]
    if len(dup):
        raise DatasetError(f"image ids found in more than one of {[str(r) for r in roots]}: {dup.head(5).tolist()}")
    return DermoscopyIndex(
        parts[0].root,
        parts[0].layout,
        frame,
        [s for p in parts for s in p.skipped],
        all(p.has_lesion_ids for p in parts),
    )


# --- ISIC ground truth -------------------------------------------------------------------------------


def _find_ground_truth(root: Path) -> Path | None:
    if (root / GROUND_TRUTH_NAME).is_file():
        return root / GROUND_TRUTH_NAME
    # The official archive nests it: ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
    found = sorted(root.glob("*GroundTruth*.csv")) + sorted(root.glob("*/*GroundTruth*.csv"))
    if len(found) > 1:
        raise DatasetError(f"{root}: several ground-truth files ({', '.join(map(str, found))}); keep one")
    return found[0] if found else None


def _read_ground_truth(path: Path, skip_bad: bool, skipped: list) -> pd.DataFrame:
    try:
        gt = pd.read_csv(path, dtype={"image": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DatasetError(f"{path}: not a readable CSV ({e})") from e
    if "image" not in gt.columns:
        raise DatasetError(f"{path}: no 'image' column; expected header image,{','.join(CLASSES)}")
    unknown = [c for c in gt.columns if c != "image" and c not in CLASSES]
    missing = [c for c in CLASSES if c not in gt.columns]
    if unknown or missing:
        raise DatasetError(
            f"{path}: class columns do not match ISIC 2018 Task 3"
            + (f"; unknown: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else "")
            + f". Expected header image,{','.join(CLASSES)}"
        )
    values = gt[list(CLASSES)].apply(pd.to_numeric, errors="coerce").to_numpy()
    one_hot = np.isin(values, (0.0, 1.0)).all(axis=1) & (np.nansum(values, axis=1) == 1)
    keep = np.ones(len(gt), dtype=bool)
    for i in np.flatnonzero(~one_hot):
        # Row numbers as a spreadsheet shows them: line 1 is the header.
        reason = f"{path.name} line {i + 2}: row for {gt['image'].iat[i]!r} is not one-hot ({values[i].tolist()})"
        if not skip_bad:
            raise DatasetError(reason + "; each row needs exactly one 1.0 and six 0.0")
        skipped.append((str(gt["image"].iat[i]), reason))
        keep[i] = False
    _check_duplicates(gt["image"], path, keep, skip_bad, skipped)
    gt = gt[keep]
    dx = [CLASSES[j] for j in np.nan_to_num(values[keep]).argmax(axis=1)]
    return pd.DataFrame({"image_id": gt["image"].str.strip().to_numpy(), "dx": dx})


def _check_duplicates(ids: pd.Series, path: Path, keep: np.ndarray, skip_bad: bool, skipped: list) -> None:
    dup = ids.duplicated(keep="first").to_numpy() & keep
    if not dup.any():
        return
    lines = [f"{ids.iat[i]!r} (line {i + 2})" for i in np.flatnonzero(dup)]
    if not skip_bad:
        raise DatasetError(f"{path.name}: duplicate image ids: {', '.join(lines[:5])}; each id must appear once")
    for i in np.flatnonzero(dup):
        skipped.append((str(ids.iat[i]), f"{path.name} line {i + 2}: duplicate id, first occurrence kept"))
    keep &= ~dup


# --- ImageFolder --------------------------------------------------------------------------------------


def _class_folders(root: Path) -> dict[Path, str]:
    folders = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            folders[d] = class_code(d.name)
        except ValueError:
            log.warning("ignoring folder %s: not a class name", d)
            continue
    return folders


def _read_image_folder(root: Path, skip_bad: bool, skipped: list) -> pd.DataFrame:
    folders = _class_folders(root)
    rows = [
        {"image_id": f.stem, "dx": code, "path": str(f)}
        for d, code in folders.items()
        for f in sorted(d.rglob("*"))
        if f.is_file() and is_image_file(f)
    ]
    frame = pd.DataFrame(rows, columns=["image_id", "dx", "path"])
    keep = np.ones(len(frame), dtype=bool)
    dup = frame["image_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        names = frame.loc[dup, "path"].head(4).tolist()
        if not skip_bad:
            raise DatasetError(f"{root}: the same file name appears in several class folders: {names}")
        for i in np.flatnonzero(frame["image_id"].duplicated(keep="first").to_numpy()):
            skipped.append((frame["path"].iat[i], "file name already used in another class folder"))
            keep[i] = False
    return frame[keep].reset_index(drop=True)


# --- images -------------------------------------------------------------------------------------------


def _image_dirs(root: Path) -> list[Path]:
    dirs = [d for pattern in _IMAGE_DIR_GLOBS for d in sorted(root.glob(pattern)) if d.is_dir()]
    return list(dict.fromkeys([*dirs, root]))  # unique, in order of preference


def _attach_paths(root: Path, frame: pd.DataFrame, skip_bad: bool, skipped: list) -> pd.DataFrame:
    found: dict[str, str] = {}
    for d in _image_dirs(root):
        for f in d.iterdir():
            if f.is_file() and is_image_file(f) and f.stem not in found:
                found[f.stem] = str(f)
    paths = frame["image_id"].map(found)
    missing = np.flatnonzero(paths.isna().to_numpy())
    if len(missing) and not skip_bad:
        ids = frame["image_id"].iloc[missing[:5]].tolist()
        raise DatasetError(
            f"{root}: {len(missing)} image file(s) missing for ids in the label file, e.g. {ids} "
            f"(row {missing[0] + 2}); looked in {[str(d) for d in _image_dirs(root)[:3]]}. "
            "Restore them, or pass --skip-bad to leave those rows out."
        )
    for i in missing:
        skipped.append((frame["image_id"].iat[i], "image file missing"))
    frame = frame.assign(path=paths)
    return frame[paths.notna().to_numpy()].reset_index(drop=True)


def _verify_images(frame: pd.DataFrame, skip_bad: bool, skipped: list, progress: bool) -> pd.DataFrame:
    def check(path: str) -> str | None:
        try:
            load_image(path)
        except ImageError as e:
            return str(e)
        return None

    # PIL releases the GIL while decoding, so threads use both cores.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(check, frame["path"])
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(frame), desc="checking images", unit="img")
        errors = list(results)
    bad = np.array([e is not None for e in errors], dtype=bool)
    if bad.any() and not skip_bad:
        first = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{bad.sum()} unreadable image(s); first: {errors[first]}. "
            "Replace the file(s), or pass --skip-bad to leave them out."
        )
    for i in np.flatnonzero(bad):
        skipped.append((frame["image_id"].iat[i], errors[i]))
    return frame[~bad].reset_index(drop=True)
