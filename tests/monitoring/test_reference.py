"""The export writes the training reference into the bundle, under the manifest's checksums."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermascan.export import split_images
from dermascan.inference import Predictor
from dermascan.inference.bundle import BundleError, load_bundle, verify_bundle
from dermascan.inference.embedding import EMBEDDING_FILE
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
    # the embedding sample: the held-out penultimate features through the projection the bundle ships
    assert ref.embedding_space == "penultimate"
    assert manifest["embedding"] == {"file": EMBEDDING_FILE} and EMBEDDING_FILE in manifest["files"]
    projection = load_bundle(sim_bundle).projection
    assert projection is not None and projection.n_fitted == ref.n_held_out
    assert ref.embeddings.shape == (min(ref.n_held_out, 300), projection.dims)
    # the reference was projected the way the Predictor projects served images: same model, same numbers
    image = split_images(sim_bundle.parent / "run", "test")[0]
    with Predictor.from_path(sim_bundle, runtime="onnxruntime") as served:
        (pred,) = served.predict([image])
    assert pred.embedding is not None and pred.embedding.shape == (projection.dims,)
    assert len(pred.embedding_list()) == projection.dims
    # PCA on the held-out features: variance shares decreasing, and the sample centred where it was fitted
    assert np.all(np.diff(projection.explained) <= 1e-6) and 0 < projection.explained.sum() <= 1 + 1e-6
    assert np.abs(ref.embeddings.mean(axis=0)).max() < 0.5 * ref.embeddings.std(axis=0).max()
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
