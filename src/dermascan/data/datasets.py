"""The torch Dataset over a :class:`DermoscopyIndex`, and an optional pre-resized image cache."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from dermascan import _io
from dermascan.data.io import load_image


class DermoscopyDataset(Dataset):
    """Images and labels from a table with ``path`` and ``label`` columns.

    Returns ``(image, label)`` with ``image`` whatever ``transform`` makes of an RGB PIL image
    (a (3, H, W) float tensor for the standard transforms). An item can be asked for as ``i`` or as
    ``(i, seed)`` (see :class:`dermascan.data.sampling.SeededSampler`): the random transform then runs
    under that seed, so augmentation does not depend on the order in which workers consume the RNG.

    ``draft`` is the model's :attr:`~dermascan.config.Preprocessing.jpeg_draft`: images are decoded as the
    Predictor decodes them, so training and evaluation see the pixels serving sees.
    """

    def __init__(
        self, frame: pd.DataFrame, transform: Callable[[Image.Image], torch.Tensor], draft: int | None = None
    ) -> None:
        self.paths = frame["path"].tolist()
        self.labels = frame["label"].to_numpy()
        self.image_ids = frame["image_id"].tolist()
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            i, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.transform(load_image(self.paths[i], draft=self.draft)), int(self.labels[i])
        return self.transform(load_image(self.paths[key], draft=self.draft)), int(self.labels[key])


def cache_images(
    frame: pd.DataFrame, cache_dir: str | Path, short_side: int, progress: bool = False, draft: int | None = None
) -> pd.DataFrame:
    """Pre-resize images so training does not decode full-size JPEGs every epoch.

    Real captures are 600x450 to 1024x768 and larger; decoding and resizing them costs more than a
    small network's forward pass on a CPU. Each image is resized once so that its shorter side is
    ``short_side`` (at least the model's resize size) and stored as a quality-95 JPEG, named after a
    hash of its source path, size and modification time, so a changed source is re-cached.

    Returns:
        A copy of ``frame`` whose ``path`` column points into the cache.
    """
    # draft-decoded sources give other pixels: a cache of their own
    cache_dir = Path(cache_dir) / (f"short{short_side}" + ("-draft" if draft is not None else ""))
    cache_dir.mkdir(parents=True, exist_ok=True)

    def one(path: str) -> str:
        st = os.stat(path)
        key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        target = cache_dir / f"{Path(path).stem}-{key}.jpg"
        if not target.exists():
            img = load_image(path, draft=draft)
            scale = short_side / min(img.size)
            if scale < 1:  # never upsample: the cache only ever saves work
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
            with _io.atomic_path(target) as tmp:
                img.save(tmp, format="JPEG", quality=95)
        return str(target)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(one, frame["path"])
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(frame), desc=f"caching at {short_side}px", unit="img")
        paths = list(results)
    return frame.assign(path=paths)
