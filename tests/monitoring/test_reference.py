"""The export writes the training reference into the bundle, under the manifest's checksums."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermascan.export import split_images
from dermascan.inference.bundle import BundleError, verify_bundle
from dermascan.monitoring.features import FEATURES
from dermascan.monitoring.reference import (
    REFERENCE_FILE,
    ReferenceError,
    bin_counts,
    feature_reference,
    load_reference,
)


def test_quantile_bins_hold_equal_shares_of_the_training_values() -> None:
    values = np.arange(1000, dtype=float)
    ref = feature_reference(values, n_bins=10)
    assert len(ref.edges) == 9 and np.allclose(ref.expected, 0.1)
    assert bin_counts([-5.0, ref.edges[0], 2000.0], ref.edges).tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert ref.low == pytest.approx(np.percentile(values, 0.5)) and ref.high == pytest.approx(
        np.percentile(values, 99.5)
    )


def test_export_writes_a_checksummed_reference(sim_bundle: Path, tmp_path: Path) -> None:
    manifest = verify_bundle(sim_bundle)
    assert manifest["reference"] == {"file": REFERENCE_FILE} and REFERENCE_FILE in manifest["files"]
    ref = load_reference(sim_bundle)
    assert set(ref.features) == set(FEATURES)
    assert ref.n_train > 0 and ref.n_held_out > 0 and 0 <= ref.flag_rate <= 1
    assert ref.embeddings.shape == (min(ref.n_held_out, 300), 7)
    assert sum(ref.class_mix.values()) == pytest.approx(1.0)
    for f in ref.features.values():
        assert sum(f.expected) == pytest.approx(1.0) and f.low <= f.high

    # the held-out predictions are one per lesion (clustered images vary more than their count says)
    splits = pd.read_csv(sim_bundle.parent / "run" / "splits.csv")
    lesions = splits[splits["split"].isin(["val", "test"])]
    images_per_lesion = len(lesions) / lesions["lesion_id"].nunique()
    assert images_per_lesion > 1.1  # the synthetic data has lesions of several images, so this can fail
    test_lesions = splits.loc[splits["split"] == "test", "lesion_id"].nunique()
    assert ref.n_held_out == (test_lesions if test_lesions >= 300 else lesions["lesion_id"].nunique())
    once = split_images(sim_bundle.parent / "run", "test", one_per_lesion=True)
    assert len(once) == test_lesions

    tampered = tmp_path / "t"
    shutil.copytree(sim_bundle, tampered)
    raw = json.loads((tampered / REFERENCE_FILE).read_text())
    raw["flag_rate"] = 0.5
    (tampered / REFERENCE_FILE).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=REFERENCE_FILE):
        verify_bundle(tampered)


def test_a_bundle_without_reference_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ReferenceError, match="dermascan export"):
        load_reference(tmp_path)


def test_a_small_training_split_gets_fewer_bins() -> None:
    from dermascan.monitoring.reference import bins_for

    assert [bins_for(n) for n in (40, 500, 999, 1000, 20000)] == [4, 5, 9, 10, 10]
