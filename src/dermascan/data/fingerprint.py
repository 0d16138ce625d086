"""The dataset fingerprint: one sha256 that names exactly the images and labels a model saw.

It hashes, per image, the id, the class code and the sha256 of the image's bytes, in image-id order: a changed
label, a re-encoded or replaced image, an added or removed image each change it; the order the rows were read in
and the folder the data lies in do not. Training records it in the run (``data.json``), export in the bundle's
manifest and the registry on the model version, so "which data?" has one answer everywhere.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: Prefix of every fingerprint: a later change of the recipe gets a new prefix instead of silently new values.
SCHEME = "ds1"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (hashlib releases the GIL: threads hash in parallel)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def dataset_fingerprint(rows: Iterable[tuple[str, str, str | os.PathLike[str]]], workers: int = 4) -> str:
    """``ds1:<sha256>`` over ``(image_id, class code, path)`` rows: ids, labels and image bytes.

    Args:
        rows: one ``(image_id, dx, path)`` per image; the order does not matter.
        workers: threads hashing image files.

    Raises:
        ValueError: an image id appears twice (two images under one name would make the hash ambiguous).
    """
    items = sorted((str(i), str(dx), Path(p)) for i, dx, p in rows)
    ids = [i for i, _, _ in items]
    if len(set(ids)) != len(ids):
        dup = next(a for a, b in itertools.pairwise(ids) if a == b)
        raise ValueError(f"image id {dup!r} appears twice: a fingerprint needs one image per id")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(file_sha256, [p for _, _, p in items]))
    h = hashlib.sha256()
    for (image_id, dx, _), digest in zip(items, digests, strict=True):
        h.update(f"{image_id},{dx},{digest}\n".encode())
    return f"{SCHEME}:{h.hexdigest()}"


__all__ = ["SCHEME", "dataset_fingerprint", "file_sha256"]
