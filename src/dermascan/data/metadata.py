"""Metadata files (lesion ids, age, sex, site, ...): which one a folder has, reading it, joining it on the image id.

The preference, documented in :mod:`dermascan.data.readers`: an explicit file, then ``metadata.csv`` or
``HAM10000_metadata.csv``, then the one ``*metadata*.csv`` in the folder (any case), said in the log.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dermascan.data.schema import HAM10000_METADATA_NAME, METADATA_NAME, DatasetError
from dermascan.taxonomy import class_code

log = logging.getLogger(__name__)

#: Exact metadata file names, preferred in this order over a looser ``*metadata*.csv`` match.
METADATA_NAMES = (METADATA_NAME, HAM10000_METADATA_NAME)
_METADATA_PATTERN = "*metadata*.csv"


def find_metadata(*folders: Path) -> Path | None:
    """The metadata file of the first folder that has one: an exact name first, else one ``*metadata*.csv``.

    Raises:
        DatasetError: a folder holds several loosely named metadata files and none of the exact names.
    """
    for folder in dict.fromkeys(folders):
        for name in METADATA_NAMES:
            if (folder / name).is_file():
                log.info("%s: metadata from %s", folder, folder / name)
                return folder / name
        loose = sorted(
            f for f in folder.iterdir() if f.is_file() and fnmatch.fnmatch(f.name.lower(), _METADATA_PATTERN)
        )
        if len(loose) > 1:
            raise DatasetError(
                f"{folder}: several metadata files ({', '.join(f.name for f in loose)}) and none named "
                f"{' or '.join(METADATA_NAMES)}; pass --metadata FILE to choose one"
            )
        if loose:
            log.warning(
                "%s: using %s as the metadata file (matched %s; --metadata FILE chooses another)",
                folder,
                loose[0].name,
                _METADATA_PATTERN,
            )
            return loose[0]
    return None


def read_metadata(path: Path) -> pd.DataFrame:
    """A metadata CSV with a unique ``image_id`` per row (ids and lesion ids kept as text)."""
    try:
        meta = pd.read_csv(path, dtype={"image_id": str, "lesion_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DatasetError(f"{path}: not a readable CSV ({e})") from e
    if "image_id" not in meta.columns:
        raise DatasetError(f"{path}: no 'image_id' column (HAM10000 header: lesion_id,image_id,dx,...)")
    dup = meta["image_id"].duplicated()
    if dup.any():
        raise DatasetError(f"{path}: duplicate image ids {meta['image_id'][dup].head(5).tolist()}")
    return meta


def join_metadata(frame: pd.DataFrame, path: Path, skip_bad: bool, skipped: list) -> pd.DataFrame:
    """``frame`` with the metadata of ``path`` joined on ``image_id``; a ``dx`` that disagrees is a bad row."""
    meta = read_metadata(path)
    if "dx" in meta.columns:
        meta = meta.rename(columns={"dx": "meta_dx"})
    merged = frame.merge(meta, on="image_id", how="left", validate="one_to_one")
    if "meta_dx" in merged.columns:
        # The two files must agree: a disagreement means one of them is from another release.
        meta_code = merged["meta_dx"].map(lambda d: class_code(d) if isinstance(d, str) else None)
        bad = meta_code.notna() & (meta_code != merged["dx"])
        for i in np.flatnonzero(bad.to_numpy()):
            reason = (
                f"{path.name}: dx {merged['meta_dx'].iat[i]!r} for {merged['image_id'].iat[i]!r} disagrees "
                f"with the ground truth ({merged['dx'].iat[i]})"
            )
            if not skip_bad:
                raise DatasetError(reason)
            skipped.append((merged["image_id"].iat[i], reason))
        merged = merged[~bad.to_numpy()].drop(columns="meta_dx")
    return merged


def read_ham_metadata(path: Path, skip_bad: bool, skipped: list) -> pd.DataFrame:
    """A HAM10000-style metadata file as the label table: its ``dx`` column gives each image's class code."""
    meta = read_metadata(path)
    if "dx" not in meta.columns:
        raise DatasetError(f"{path}: no 'dx' column to take the diagnosis from")
    codes = []
    keep = np.ones(len(meta), dtype=bool)
    for i, dx in enumerate(meta["dx"]):
        try:
            codes.append(class_code(str(dx)))
        except ValueError as e:
            if not skip_bad:
                raise DatasetError(f"{path.name} line {i + 2}: {e}") from e
            skipped.append((str(meta["image_id"].iat[i]), f"{path.name} line {i + 2}: {e}"))
            keep[i] = False
            codes.append("")
    meta["dx"] = codes
    return meta[keep].reset_index(drop=True)
