"""Optional image keeping for review: a folder or any fsspec URL (``s3://bucket/dermascan``); off by default.

Images are written under ``<root>/<clinic_id>/<prediction_id>.<ext>``; the row keeps only that URI.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ImageKeeper:
    """Writes and removes kept images.

    Args:
        root: folder path or fsspec URL.
    """

    def __init__(self, root: str) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.fs.makedirs(self.root, exist_ok=True)
        self._protocol = root.split("://", 1)[0] + "://" if "://" in root else ""

    def put(self, clinic_id: str, prediction_id: str, data: bytes, ext: str) -> str:
        """Write one image; returns its URI."""
        folder = f"{self.root}/{clinic_id}"
        self.fs.makedirs(folder, exist_ok=True)
        path = f"{folder}/{prediction_id}.{ext}"
        with self.fs.open(path + ".part", "wb") as f:  # write then rename: a reader never sees half an image
            f.write(data)
        self.fs.mv(path + ".part", path)
        return self._protocol + path

    def remove(self, uri: str) -> None:
        """Delete a kept image (its row was not written); a failure is logged, not raised."""
        path = uri[len(self._protocol) :]
        try:
            self.fs.rm(path)
        except OSError:
            log.warning("could not remove a kept image whose prediction was not stored")


__all__ = ["ImageKeeper"]
