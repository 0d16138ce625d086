"""Fixtures shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from dermascan.testing import random_run


@pytest.fixture
def run_with_data(tiny_isic: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A random-weight run whose config.yaml and splits.csv point at a tiny ISIC folder."""
    run = random_run(tmp_path / "run", "resnet18", image_size=32)
    (run / "config.yaml").write_text(yaml.safe_dump({"arch": "resnet18", "data": str(tiny_isic)}))
    ids = sorted(p.stem for p in (tiny_isic / "images").glob("*.jpg"))
    val = ids[3:8]
    splits = pd.DataFrame({"image_id": ids, "lesion_id": ids, "split": ["val" if i in val else "train" for i in ids]})
    splits.to_csv(run / "splits.csv", index=False)
    return run, val
