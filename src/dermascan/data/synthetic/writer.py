"""Writing a synthetic dataset to disk in the ISIC 2018 Task 3 layout, atomically, with worker processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermascan.data.schema import GROUND_TRUTH_NAME, METADATA_NAME
from dermascan.data.synthetic.config import SynthConfig
from dermascan.data.synthetic.plan import METADATA_COLUMNS
from dermascan.data.synthetic.render import render_image
from dermascan.taxonomy import CLASSES

if TYPE_CHECKING:
    import pandas as pd


def _write_chunk(config: SynthConfig, root: str, indices: range) -> list[dict[str, Any]]:
    rows = []
    for i in indices:
        image, mask, row = render_image(config, i)
        name = row["image_id"]
        # No EXIF, fixed settings: PIL's encoder is deterministic, so files are byte-identical.
        image.save(os.path.join(root, "images", f"{name}.jpg"), format="JPEG", quality=config.jpeg_quality)
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            os.path.join(root, "masks", f"{name}_segmentation.png"), format="PNG"
        )
        rows.append(row)
    return rows


def _chunks(n: int, workers: int) -> Iterator[range]:
    step = max(4, min(128, n // (workers * 8) or 1))
    for start in range(0, n, step):
        yield range(start, min(n, start + step))


def generate_dataset(out_dir: str | os.PathLike[str], config: SynthConfig, progress: bool = True,
                     overwrite: bool = False) -> pd.DataFrame:  # fmt: skip
    """Write a synthetic dataset in the ISIC 2018 Task 3 layout and return its metadata.

    Layout: ``images/<image_id>.jpg``, ``masks/<image_id>_segmentation.png`` (0/255),
    ``ISIC2018_Task3_GroundTruth.csv`` (one-hot, 1.0/0.0) and ``metadata.csv``. Everything is written
    into a hidden temporary folder beside ``out_dir``, the CSVs last, and renamed into place at the
    end, so an interrupted run never leaves a folder that looks complete.

    Args:
        out_dir: the dataset folder to create.
        config: what to generate.
        progress: show a tqdm progress bar.
        overwrite: replace an existing non-empty ``out_dir`` (otherwise that is an error).

    Returns:
        The metadata table (the contents of ``metadata.csv``).

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is false.
    """
    import pandas as pd
    from tqdm import tqdm

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose another folder or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        workers = config.workers or os.cpu_count() or 1
        workers = max(1, min(workers, config.n // 16 or 1))
        rows: list[dict[str, Any]] = []
        with tqdm(total=config.n, disable=not progress, desc="synth", unit="img") as bar:
            if workers == 1:
                for chunk in _chunks(config.n, 1):
                    rows += _write_chunk(config, str(tmp), chunk)
                    bar.update(len(chunk))
            else:
                import multiprocessing as mp

                # fork where there is one: workers start at once and need no importable __main__
                # (stdin scripts, notebooks); they touch only numpy and PIL, never the parent's threads.
                method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
                with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
                    futures = [pool.submit(_write_chunk, config, str(tmp), c) for c in _chunks(config.n, workers)]
                    for fut in futures:
                        part = fut.result()
                        rows += part
                        bar.update(len(part))
        meta = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
        onehot = np.zeros((config.n, len(CLASSES)))
        onehot[np.arange(config.n), [CLASSES.index(dx.upper()) for dx in meta["dx"]]] = 1.0
        truth = pd.DataFrame(onehot, columns=list(CLASSES))
        truth.insert(0, "image", meta["image_id"])
        truth.to_csv(tmp / GROUND_TRUTH_NAME, index=False)
        meta.to_csv(tmp / METADATA_NAME, index=False)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(trash / "old")
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
