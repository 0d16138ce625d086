"""Where the unlabelled images come from: a folder, or the production store.

The store pool is the clinic's question "which lesions should go for histopathology first?": the
predictions still awaiting a biopsy (no feedback row with a histopathology label), of every clinic, primary
and canary answers (a shadow row is the challenger's second opinion on an image already in the pool). Only
predictions whose image was kept (the service's image keeping) can be scored again by another model; the
others are counted and named in :attr:`Pool.skipped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dermascan.errors import ConfigError
from dermascan.inference import expand_paths
from dermascan.inference.results import ImageInput

#: What a pool argument that is a database looks like.
DB_PREFIXES = ("sqlite:", "postgresql", "postgres:")
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_ALL = 2**31 - 1  # a LIMIT every database accepts: the whole list


@dataclass
class Pool:
    """Unlabelled images to rank.

    Attributes:
        source: the folder or the database URL they came from.
        names: one name per image: the file path, or the store's prediction id.
        images: what the Predictor reads: paths, or the kept images' bytes.
        clinics: the clinic of each image (store pools), else ``None``.
        skipped: ``(name, why)`` of images that cannot be scored.
    """

    source: str
    names: list[str]
    images: list[ImageInput]
    clinics: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


def is_database(pool: str | os.PathLike[str]) -> bool:
    text = str(pool)
    return text.startswith(DB_PREFIXES) or (Path(text).is_file() and text.endswith(DB_SUFFIXES))


def open_pool(pool: str | os.PathLike[str], limit: int | None = None) -> Pool:
    """A folder of images (recursive) or a store (``sqlite:///...``, ``postgresql+psycopg://...`` or a ``.db`` file).

    Raises:
        ConfigError: the path is neither an image folder nor a database, or holds nothing to rank.
    """
    text = str(pool)
    if is_database(text):
        url = text if text.startswith(DB_PREFIXES) else f"sqlite:///{Path(text).resolve()}"
        found = store_pool(url, limit)
    elif Path(text).is_dir():
        files = list(expand_paths([text]))[:limit]
        found = Pool(text, [str(f) for f in files], list(files))
    else:
        raise ConfigError(
            f"--pool {text!r} is neither an image folder nor a database: pass a folder of images, a "
            "sqlite:///path/dermascan.db or postgresql+psycopg://... URL, or a .db file"
        )
    if not found.names:
        why = f" ({len(found.skipped)} without a kept image)" if found.skipped else ""
        raise ConfigError(f"the pool {text} holds no image to rank{why}")
    return found


def store_pool(url: str, limit: int | None = None) -> Pool:
    """Predictions awaiting histopathology, with their kept images (oldest first: they have waited longest).

    Raises:
        StoreError: the database cannot be reached or is not migrated.
    """
    import fsspec

    from dermascan.store import check_schema, make_engine, session_factory
    from dermascan.store.clinics import list_clinics
    from dermascan.store.predictions import PredictionFilter, list_for_clinic

    engine = make_engine(url)
    try:
        check_schema(engine)
        awaiting = PredictionFilter(awaiting_histopathology=True)
        with session_factory(engine)() as session:
            rows = []
            for clinic, _keys in list_clinics(session):
                rows += list_for_clinic(session, clinic.id, awaiting, limit=_ALL, offset=0)[0]
    finally:
        engine.dispose()
    rows.sort(key=lambda r: (r.created_at, r.id))
    names, images, clinics, skipped = [], [], [], []
    for row in rows:
        if row.image_uri is None:
            skipped.append((row.id, "image not kept (turn on the service's image keeping to rank it)"))
            continue
        try:
            with fsspec.open(row.image_uri, "rb") as f:
                data = f.read()
        except OSError as e:
            skipped.append((row.id, f"kept image {row.image_uri} unreadable: {e}"))
            continue
        names.append(row.id)
        images.append(data)
        clinics.append(row.clinic_id)
        if limit is not None and len(names) >= limit:
            break
    return Pool(url, names, images, clinics, skipped)


def split_pool(run_dir: str | os.PathLike[str], split: str = "test") -> Pool:
    """The images of one split of a run (``splits.csv`` over the run's own data folders), as a pool.

    Raises:
        ConfigError: the run has no splits or config, or the split is empty.
    """
    from dermascan.runs import load_run
    from dermascan.training.config import read_run_data

    run = load_run(run_dir, model=False)
    if run.splits is None or run.config is None:
        raise ConfigError(f"{run_dir} has no splits.csv or config.yaml: pass a run folder made by `dermascan train`")
    ids = set(run.splits.loc[run.splits["split"] == split, "image_id"])
    frame = read_run_data(run.config).frame
    paths = frame.loc[frame["image_id"].isin(ids), "path"].astype(str).tolist()
    if not paths:
        raise ConfigError(f"the {split} split of {run_dir} holds no image")
    return Pool(f"{run_dir} ({split} split)", paths, list(paths))


__all__ = ["DB_PREFIXES", "Pool", "is_database", "open_pool", "split_pool", "store_pool"]
