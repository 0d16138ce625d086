"""Train/validation/test splits, stratified by class and grouped by lesion.

HAM10000 holds 10,015 images of 7,470 lesions: splitting by image puts photos of one lesion on both
sides and inflates every figure. Here a lesion lives in exactly one split, and each class keeps its
proportions in every split. The assignment depends only on the seed and the table.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dermascan import _io
from dermascan.data.readers import DatasetError
from dermascan.taxonomy import CLASSES

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ["image_id", "lesion_id", "split"]


class SplitWarning(UserWarning):
    """A class too small to appear in every split: which splits went without it, and why."""


def make_splits(
    frame: pd.DataFrame, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> pd.DataFrame:
    """Assign every image to ``train``, ``val`` or ``test``, lesion-grouped and class-stratified.

    Per class, lesions are shuffled with the seed, and one of them (the last in that order) is kept
    for training first: a class with any lesion is always learned from. The others are dealt to test,
    then val, until each holds its share of that class's images; the rest go to train. So a class
    with one lesion is in train only, one with two lesions in train and test, and one with three or
    more in every split (each held-out split with a positive fraction gets at least one lesion). A
    class missing from a held-out split is named in a :class:`SplitWarning` with its counts.

    Where every class has enough lesions to fill its shares, the assignment is exactly that of
    dealing all lesions to test, then val, then train (the reserved lesion would have gone to train).

    Args:
        frame: needs ``image_id``, ``lesion_id`` and ``dx`` columns (a :class:`DermoscopyIndex` frame).
        val_fraction: share of each class's images for validation.
        test_fraction: share for testing.
        seed: the same seed and table give the same split.

    Returns:
        A frame with columns ``image_id, lesion_id, split`` in the input's row order.
    """
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {v}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    lesion_dx, lesion_size = _lesions(frame, "make_splits")
    fractions = {"test": test_fraction, "val": val_fraction}
    wanted = [s for s in ("test", "val") if fractions[s] > 0]
    assignment: dict[str, str] = {}
    for k, code in enumerate(CLASSES):
        lesions = np.array(sorted(lesion_dx.index[lesion_dx == code]))
        if len(lesions) == 0:
            continue
        rng = np.random.default_rng([seed, k])  # per class, so adding one class leaves the others alone
        lesions = lesions[rng.permutation(len(lesions))]
        assignment[lesions[-1]] = "train"  # reserved before val and test are dealt
        total = int(lesion_size[lesions].sum())
        targets = {s: fractions[s] * total for s in ("test", "val")}
        if len(lesions) >= 3:
            targets = {s: max(t, 1.0) if fractions[s] > 0 else 0.0 for s, t in targets.items()}
        filled = {"test": 0, "val": 0}
        dealt = lesions[:-1]
        for i, lesion in enumerate(dealt):
            empty = [s for s in wanted if filled[s] == 0]
            if len(lesions) >= 3 and empty and len(dealt) - i <= len(empty):
                split = empty[0]  # just enough lesions left to give each empty held-out split one
            else:
                split = next((s for s in ("test", "val") if filled[s] < targets[s] - 1e-9), "train")
            if split != "train":
                filled[split] += int(lesion_size[lesion])
            assignment[lesion] = split
        _warn_if_short(code, lesions, lesion_size, assignment, wanted)
    out = frame[["image_id", "lesion_id"]].copy()
    out["split"] = out["lesion_id"].map(assignment)
    check_no_leakage(out)
    return out.reset_index(drop=True)


def make_fold_splits(frame: pd.DataFrame, folds: int, fold: int, seed: int = 0) -> pd.DataFrame:
    """Fold ``fold`` of a lesion-grouped, class-stratified ``folds``-fold cross-validation.

    Every lesion is dealt to one fold (per class, shuffled with the seed, each lesion to the fold holding the
    fewest images of its class so far), so each fold holds about ``1 / folds`` of every class. Fold ``fold`` is
    the ``test`` split (the figures). Of the other folds' lesions, half a fold's worth of each class is ``val``
    (checkpoint selection and the locked threshold) and the rest ``train``. Over the ``folds`` folds every
    lesion is tested exactly once, by a model that never saw it, at a threshold chosen on other lesions.

    Args:
        frame: needs ``image_id``, ``lesion_id`` and ``dx`` (a :class:`DermoscopyIndex` frame).
        folds: number of folds (at least 2).
        fold: the held-out fold, ``0 .. folds - 1``.
        seed: the same seed and table give the same folds.

    Returns:
        A frame with columns ``image_id, lesion_id, split`` in the input's row order.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    lesion_dx, lesion_size = _lesions(frame, "make_fold_splits")
    assignment: dict[str, str] = {}
    for k, code in enumerate(CLASSES):
        lesions = np.array(sorted(lesion_dx.index[lesion_dx == code]))
        lesions = lesions[np.random.default_rng([seed, k]).permutation(len(lesions))]
        filled = np.zeros(folds)  # images of this class per fold
        rest = []
        for lesion in lesions:
            f = int(np.argmin(filled))
            filled[f] += lesion_size[lesion]
            if f == fold:
                assignment[lesion] = "test"
            else:
                rest.append(lesion)
        val_target, val_filled = filled.sum() / (2 * folds), 0
        for lesion in rest:  # in the shuffled order: the first half fold's worth validates
            if val_filled < val_target:
                assignment[lesion] = "val"
                val_filled += lesion_size[lesion]
            else:
                assignment[lesion] = "train"
    out = frame[["image_id", "lesion_id"]].copy()
    out["split"] = out["lesion_id"].map(assignment)
    check_no_leakage(out)
    return out.reset_index(drop=True)


def _lesions(frame: pd.DataFrame, caller: str) -> tuple[pd.Series, pd.Series]:
    """Each lesion's class and image count. A lesion's class is that of its images; if sources disagree, the
    most frequent wins."""
    missing = {"image_id", "lesion_id", "dx"} - set(frame.columns)
    if missing:
        raise ValueError(f"{caller} needs columns image_id, lesion_id, dx; missing {sorted(missing)}")
    grouped = frame.groupby("lesion_id")
    return grouped["dx"].agg(lambda s: s.value_counts().index[0]), grouped.size()


def _warn_if_short(
    code: str, lesions: np.ndarray, lesion_size: pd.Series, assignment: dict[str, str], wanted: list[str]
) -> None:
    """Warn, naming the class and its counts, when a held-out split that should have it went without."""
    sizes = lesion_size[lesions].to_numpy()
    where_to = np.array([assignment[x] for x in lesions])
    images = {s: int(sizes[where_to == s].sum()) for s in SPLITS}
    short = [s for s in wanted if images[s] == 0]
    if not short:
        return
    where = ", ".join(f"{s} {images[s]}" for s in SPLITS)
    message = (
        f"class {code} has only {len(lesions)} lesion(s) ({sum(images.values())} image(s)): no {' or '.join(short)} "
        f"image for it (images per split: {where}). Its {'/'.join(short)} figures will be undefined; "
        "add lesions of this class, or read per-class results with that in mind."
    )
    warnings.warn(message, SplitWarning, stacklevel=3)


def check_no_leakage(splits: pd.DataFrame) -> None:
    """Raise if any lesion appears in more than one split."""
    per_lesion = splits.groupby("lesion_id")["split"].nunique()
    leaked = per_lesion[per_lesion > 1]
    if len(leaked):
        raise DatasetError(
            f"{len(leaked)} lesion(s) appear in several splits, e.g. {leaked.index[:5].tolist()}: "
            "figures would be inflated by lesion leakage. Regenerate splits.csv with `dermascan train`."
        )


def write_splits(splits: pd.DataFrame, path: str | Path) -> Path:
    return _io.write_csv(path, splits[SPLIT_COLUMNS])


def read_splits(path: str | Path, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read and validate a ``splits.csv``; with ``frame``, check every id exists in the dataset."""
    path = Path(path)
    try:
        splits = pd.read_csv(path, dtype={"image_id": str, "lesion_id": str})
    except FileNotFoundError as e:
        raise DatasetError(f"{path} not found: a run folder keeps its splits.csv") from e
    if list(splits.columns[:3]) != SPLIT_COLUMNS:
        raise DatasetError(f"{path}: header must be {','.join(SPLIT_COLUMNS)}, got {list(splits.columns)}")
    bad = ~splits["split"].isin(SPLITS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{path} line {i + 2}: split {splits['split'].iat[i]!r} is not one of {SPLITS}")
    check_no_leakage(splits)
    if frame is not None:
        unknown = set(splits["image_id"]) - set(frame["image_id"])
        if unknown:
            raise DatasetError(
                f"{path}: {len(unknown)} image id(s) not in the dataset, e.g. {sorted(unknown)[:3]}; "
                "was the run trained on another folder? Pass the same --data."
            )
    return splits


def combine_official(
    train: pd.DataFrame,
    val: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """Splits when the official ISIC 2018 validation/test folders are given.

    The given folders become the ``val``/``test`` splits as they are; whichever is not given is carved
    from ``train`` by :func:`make_splits`. Lesions that appear in both the training folder and an
    official folder are dropped from training (HAM10000 lesions do not cross the official sets, but a
    merged local collection might).
    """
    held_out = pd.concat([f for f in (val, test) if f is not None], ignore_index=True)
    clean = train[~train["lesion_id"].isin(held_out["lesion_id"])] if len(held_out) else train
    carved = make_splits(
        clean,
        val_fraction=0.0 if val is not None else val_fraction,
        test_fraction=0.0 if test is not None else test_fraction,
        seed=seed,
    )
    parts = [carved]
    for name, f in (("val", val), ("test", test)):
        if f is not None:
            parts.append(f[["image_id", "lesion_id"]].assign(split=name))
    out = pd.concat(parts, ignore_index=True)
    check_no_leakage(out)
    return out
