from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from dermascan.data.eda import run_eda
from dermascan.data.readers import read_dataset
from dermascan.taxonomy import CLASSES


def test_eda_writes_summary_plots_and_page(tiny_isic: Path, tmp_path: Path) -> None:
    out = tmp_path / "eda"
    summary = run_eda(read_dataset(tiny_isic), out)
    saved = json.loads((out / "eda.json").read_text())
    assert saved["class_counts"] == {c: 6 for c in CLASSES} == summary["class_counts"]
    assert saved["imbalance_ratio"] == 1.0
    assert len(saved["channel_mean"]) == 3 and all(0 < m < 1 for m in saved["channel_mean"])
    assert saved["lesions"]["lesions_with_several_images"] > 0
    assert saved["metadata"]["sex"] == {"male": 21, "female": 21}
    assert saved["image_size"]["most_common"] == {"40x40": 42}
    for name in ("class_distribution.png", "samples.png", "channel_histograms.png", "metadata.png"):
        assert Image.open(out / name).size[0] > 100
    page = (out / "eda.html").read_text()
    assert "samples.png" in page and "Imbalance ratio" in page
