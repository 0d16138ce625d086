"""scripts/cv_fairness.py: detection by group over a cross-validation's pooled predictions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cv_fairness.py"


def test_a_site_with_missed_melanomas_is_named_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows, meta = [], []
    for i in range(400):
        site = "face" if i < 200 else "back"
        melanoma = i % 4 == 0  # 50 melanomas a site
        found = melanoma and (i % 8 == 0 if site == "face" else True)  # the face: half of them missed
        probs = rng.dirichlet(np.ones(len(CLASSES)))
        rows.append({"fold": i % 5, "image_id": f"ISIC_{i:07d}", "label": MELANOMA_INDEX if melanoma else 1,
                     "pred": MELANOMA_INDEX if found else 1, **dict(zip(CLASSES, probs, strict=True))})  # fmt: skip
        meta.append({"image_id": f"ISIC_{i:07d}", "localization": site, "age": 50.0, "sex": "male"})
    (tmp_path / "cv").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "cv" / "predictions.csv", index=False)
    pd.DataFrame(meta).to_csv(tmp_path / "meta.csv", index=False)
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "cv"), "--metadata", str(tmp_path / "meta.csv")],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    face = next(line for line in out.splitlines() if " face " in line)
    back = next(line for line in out.splitlines() if " back " in line)
    assert "50 melanomas" in face and "detection 0.500" in face and "significantly fewer" in face
    assert "detection 1.000" in back and "significantly fewer" not in back
