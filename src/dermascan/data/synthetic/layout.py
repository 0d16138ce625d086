"""Identifiers and the image -> lesion layout: which lesion each image shows, independent of ``n``."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dermascan.data.synthetic.config import TAG_LAYOUT

_LAYOUT_BLOCK = 4096


def image_id(index: int) -> str:
    """The image identifier of image ``index`` (``SYN_0000123``)."""
    return f"SYN_{index:07d}"


def lesion_id(lesion_no: int) -> str:
    """The lesion identifier of lesion number ``lesion_no`` (``SYNL_0000042``)."""
    return f"SYNL_{lesion_no:07d}"


@lru_cache(maxsize=256)
def _layout_block(seed: int, rate: float, block: int) -> np.ndarray:
    """Images per lesion for lesions ``block * 4096 ...``: 1, or 2-3 with probability ``rate``."""
    rng = np.random.default_rng([seed, TAG_LAYOUT, block])
    u = rng.random((2, _LAYOUT_BLOCK))
    return 1 + (u[0] < rate) * (1 + (u[1] < 0.5))


def lesion_of_image(seed: int, rate: float, index: int) -> tuple[int, int]:
    """(lesion number, view number within the lesion) of image ``index``; independent of ``n``."""
    first_image, block = 0, 0
    while True:
        counts = _layout_block(seed, rate, block)
        ends = first_image + np.cumsum(counts)
        if index < ends[-1]:
            k = int(np.searchsorted(ends, index, side="right"))
            start = int(ends[k] - counts[k])
            return block * _LAYOUT_BLOCK + k, index - start
        first_image = int(ends[-1])
        block += 1
