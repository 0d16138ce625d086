"""Melanoma detection by body site, age and sex over a finished cross-validation: every HAM10000 image scored
once, at its own fold's locked threshold, so the groups hold five times the melanomas one held-out split has.

    python scripts/cv_fairness.py cv/final --metadata ../shared/data/ham10000-200/HAM10000_metadata.csv

Prints each group with at least 20 melanomas: detection (sensitivity) with its Wilson interval, and the
Holm-corrected Fisher test against the other groups of its attribute, as `dermascan fairness` computes them.
"""

from __future__ import annotations

import argparse

import pandas as pd

from dermascan.evaluation.fairness_stats import audit_frame
from dermascan.taxonomy import MELANOMA_INDEX

ATTRIBUTES = ("localization", "age", "sex")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", help="a finished `dermascan cv` folder (its predictions.csv)")
    parser.add_argument("--metadata", required=True, help="HAM10000_metadata.csv (image_id, localization, age, sex)")
    args = parser.parse_args()
    meta = pd.read_csv(args.metadata, usecols=["image_id", *ATTRIBUTES])
    frame = pd.read_csv(f"{args.cv}/predictions.csv").merge(meta, on="image_id", how="left")
    called = (frame["pred"] == MELANOMA_INDEX).to_numpy()  # called melanoma at its fold's locked threshold
    audit = audit_frame(frame, called, ATTRIBUTES, min_group_size=20, min_melanomas=20, gap_points=5.0, confidence=0.95)
    print(f"{args.cv}: {int((frame['label'] == MELANOMA_INDEX).sum())} melanomas, {len(frame)} images")
    for attribute, result in audit.items():
        for group, g in result["groups"].items():
            if g["status"] != "ok":
                continue
            s, p = g["sensitivity"], g["p_adjusted"]  # no p when the attribute has one group only
            flag = "  significantly fewer than the rest" if g["significant"] else ""
            print(f"  {attribute:13s} {group:16s} {g['n_melanoma']:4d} melanomas  detection {s.value:.3f} "
                  f"[{s.lo:.3f}, {s.hi:.3f}]  Holm p {'n/a' if p is None else f'{p:.2g}'}{flag}")  # fmt: skip


if __name__ == "__main__":
    main()
