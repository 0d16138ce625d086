"""Shared fixtures: tiny datasets written on the fly (no real images are shipped with the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermascan.taxonomy import CLASSES


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run tiny models on tiny images, where a second thread costs more in overhead than it saves."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tiny_isic(
    root: Path, per_class: int = 6, size: int = 40, seed: int = 0, ham_metadata: bool = True, first_id: int = 0
) -> Path:
    """An ISIC 2018 Task 3 folder: class-tinted noise images, one-hot ground truth, HAM10000 metadata.

    Every second lesion has two images, so lesion grouping matters.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    gt_rows, meta_rows = [], []
    n = first_id
    for k, code in enumerate(CLASSES):
        for j in range(per_class):
            image_id = f"ISIC_{n:07d}"
            lesion = f"HAM_{first_id}_{k:02d}{j // 2 if j % 4 < 2 else j:05d}"
            tint = np.array([200 - 20 * k, 120 + 10 * k, 140], dtype=np.float64)
            px = np.clip(tint + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / "images" / f"{image_id}.jpg", quality=90)
            gt_rows.append({"image": image_id, **{c: float(c == code) for c in CLASSES}})
            meta_rows.append(
                {
                    "lesion_id": lesion,
                    "image_id": image_id,
                    "dx": code.lower(),
                    "dx_type": "histo",
                    "age": float(30 + 5 * (n % 10)),
                    "sex": ("male", "female")[n % 2],
                    "localization": ("back", "face", "lower extremity")[n % 3],
                }
            )
            n += 1
    pd.DataFrame(gt_rows).to_csv(root / "ISIC2018_Task3_GroundTruth.csv", index=False)
    if ham_metadata:
        pd.DataFrame(meta_rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def write_ham_image_folder(
    root: Path, per_class: int = 2, metadata_name: str | None = "HAM10000_metadata_sample.csv", **kwargs
) -> Path:
    """A public-style ImageFolder sample of HAM10000: one folder per class (``mel/``, ``nv/``, ...), the metadata
    in a loosely named CSV beside them (or, with ``metadata_name=None``, only in ``<root>-isic/HAM10000_metadata.csv``).
    """
    import shutil

    isic = write_tiny_isic(root.parent / f"{root.name}-isic", per_class=per_class, **kwargs)
    meta = pd.read_csv(isic / "HAM10000_metadata.csv")
    for row in meta.itertuples():
        (root / row.dx).mkdir(parents=True, exist_ok=True)
        shutil.copy(isic / "images" / f"{row.image_id}.jpg", root / row.dx / f"{row.image_id}.jpg")
    if metadata_name:
        meta.to_csv(root / metadata_name, index=False)
    return root


@pytest.fixture
def tiny_isic(tmp_path: Path) -> Path:
    return write_tiny_isic(tmp_path / "isic")


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data set (48 px), enriched in melanoma so every split has some."""
    from dermascan.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth") / "d"
    priors = {"MEL": 0.3, "NV": 0.4, "BCC": 0.06, "AKIEC": 0.06, "BKL": 0.08, "DF": 0.05, "VASC": 0.05}
    generate_dataset(root, SynthConfig(n=240, size=48, seed=5, class_priors=priors, workers=1), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_run(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained (2 epochs, 32 px) resnet18 run on ``synth_small``, shared by evaluation-side tests."""
    from dermascan.training.config import resolve_config
    from dermascan.training.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = resolve_config(
        "cpu-demo",
        data=str(synth_small),
        out=str(out),
        epochs=2,
        image_size=32,
        batch_size=32,
        precision="32-true",
        val_fraction=0.3,
        test_fraction=0.3,
        seed=0,
    )
    train(cfg, progress=False)
    return out
