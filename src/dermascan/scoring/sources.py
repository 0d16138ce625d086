"""Where the images of an archive come from: a folder or any fsspec URL, listed recursively.

A plain path and ``file://`` name the same local files, and both are recorded as absolute local paths, so a
re-run finds the rows it already wrote whichever spelling it is given. Other file systems (``s3://``,
``gs://``, ``memory://`` ...) are recorded as full URLs. The reading of bytes happens where the decoding
happens (a thread of the local engine, a decode task of the Ray engine), so the listing process never holds
the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from dermascan.data.io import IMAGE_SUFFIXES, is_image_file
from dermascan.errors import DermaScanError


class ScoringError(DermaScanError, ValueError):
    """An archive, output or option that cannot be scored, with what is wrong and how to fix it."""


@dataclass(frozen=True)
class ImageRef:
    """One image of the archive.

    Attributes:
        image_id: the file name without its suffix (the ISIC ``image_id``).
        path: absolute local path, or the full URL on another file system; the key that resume matches on.
    """

    image_id: str
    path: str


def _filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ImportError, ValueError) as e:  # an unknown protocol, or its package (s3fs, gcsfs) missing
        raise ScoringError(f"cannot open {url!r}: {e}; install the fsspec back-end for it (s3fs, gcsfs, ...)") from e


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def list_images(url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> list[ImageRef]:
    """Every image file under ``url`` (recursively, sorted by path), or ``url`` itself when it is a file.

    Image files are recognised by suffix (``.jpg``, ``.png``, ...; hidden files are left out), so a lesion's
    metadata CSV beside the images is not reported as a bad image, while a corrupt ``.jpg`` is (as a row with
    its error).

    Raises:
        ScoringError: nothing at ``url``, or a folder without any image file.
    """
    url = os.fspath(url)
    fs, root = _filesystem(url, storage_options)
    if not fs.exists(root):
        raise ScoringError(f"input {url!r} does not exist: give a folder of images or an fsspec URL (s3://...)")
    if fs.isfile(root):
        found = [root]
    else:
        found = [p for p in fs.find(root) if is_image_file(PurePosixPath(p))]
        if not found:
            raise ScoringError(f"input {url!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    local = _is_local(fs)
    return [ImageRef(PurePosixPath(p).stem, p if local else fs.unstrip_protocol(p)) for p in sorted(found)]


def read_bytes(path: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """The bytes of one listed image (a local path or a URL); raises ``OSError`` when it cannot be read."""
    import fsspec

    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        return f.read()


__all__ = ["ImageRef", "ScoringError", "list_images", "read_bytes"]
