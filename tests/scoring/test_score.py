"""`score` on the local engine: rows, error rows, resume after a crash, fsspec URLs, refusals, the CLI."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.scoring.conftest import BAD, read_rows
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.inference import Predictor
from dermascan.inference.bundle import bundle_digest
from dermascan.scoring import ScoringError, list_images, output_schema, score
from dermascan.scoring import batch as batch_module
from dermascan.taxonomy import CLASSES


def test_rows_match_the_predictor_and_bad_files_become_error_rows(bundle: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    summary = score(bundle, archive, out, batch_size=8)
    assert (summary.n_images, summary.n_scored, summary.n_errors, summary.n_rows) == (25, 25, 3, 25)
    assert pq.read_schema(out).names == output_schema().names
    rows = {r["path"]: r for r in read_rows(out)}
    assert not any(p.endswith("metadata.csv") for p in rows)

    for name, word in BAD.items():
        r = rows[str(archive / name)]
        assert word in r["error"] and name.split("/")[-1] in r["error"]
        assert r["primary"] is None and all(r[c] is None for c in CLASSES)
        assert r["bundle_digest"] == bundle_digest(bundle)  # which model refused it

    # Every scored row is what the Predictor itself answers for that file (the one inference path).
    predictor = Predictor.from_path(bundle)
    good = [p for p, r in rows.items() if r["error"] is None]
    for pred in predictor.predict(good, names=good):
        r = rows[pred.image]
        assert r["image_id"] == Path(pred.image).stem
        assert [r[c] for c in CLASSES] == pytest.approx([pred.probabilities[c] for c in CLASSES], abs=1e-6)
        assert (r["primary"], r["melanoma_flag"], r["risk_band"]) == (pred.primary, pred.melanoma_flag, pred.risk_band)
        assert r["melanoma_risk"] == pytest.approx(pred.melanoma_risk, abs=1e-6)
        assert r["threshold"] == pred.threshold == 0.2 and r["model_version"] == pred.model_version
        assert math.isclose(sum(r[c] for c in CLASSES), 1.0, abs_tol=1e-6)


def test_resume_after_a_crash_scores_only_the_rest(
    bundle: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scores.parquet"
    reads: list[str] = []
    real_read = batch_module.read_bytes

    def crash_after_ten(path: str, storage_options: dict | None = None) -> bytes:
        if len(reads) == 10:
            raise KeyboardInterrupt("the node was pre-empted")  # not an Exception: it stops the whole run
        reads.append(path)
        return real_read(path, storage_options)

    monkeypatch.setattr(batch_module, "read_bytes", crash_after_ten)
    with pytest.raises(KeyboardInterrupt):
        score(bundle, archive, out, batch_size=4, workers=1, rows_per_part=4)
    assert not out.exists()
    parts = sorted((tmp_path / "scores.parquet.parts").glob("part-*.parquet"))
    done = sum(pq.read_metadata(p).num_rows for p in parts)
    assert parts and 4 <= done <= 10  # the batches scored before the crash are safe on disk

    monkeypatch.setattr(batch_module, "read_bytes", real_read)
    reads.clear()
    summary = score(bundle, archive, out, batch_size=4)
    assert (summary.n_skipped, summary.n_scored, summary.n_rows) == (done, 25 - done, 25)
    rows = read_rows(out)
    assert len({r["path"] for r in rows}) == 25  # no image twice
    assert not (tmp_path / "scores.parquet.parts").exists()

    again = score(bundle, archive, out)  # nothing left: the output stays as it is
    assert (again.n_skipped, again.n_scored, again.n_rows) == (25, 0, 25)
    assert read_rows(out) == rows


def test_new_images_are_added_to_an_existing_output(bundle: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    first = score(bundle, archive / "clinic_a", out)
    summary = score(bundle, archive, out)
    assert summary.n_skipped == first.n_scored == 12
    assert summary.n_rows == 25 and summary.n_scored == 13


def test_fsspec_urls_file_and_memory(bundle: Path, archive: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.parquet"
    score(bundle, archive, plain)
    # file:// names the same local files: the same rows, recorded under the same absolute paths.
    via_url = tmp_path / "url.parquet"
    score(bundle, f"file://{archive}", via_url)
    assert read_rows(via_url) == read_rows(plain)

    fs = fsspec.filesystem("memory")
    for f in sorted(archive.rglob("*")):
        if f.is_file():
            fs.pipe(f"/archive/{f.relative_to(archive)}", f.read_bytes())
    try:
        mem = tmp_path / "memory.parquet"
        summary = score(bundle, "memory://archive", mem)
        assert summary.n_scored == 25 and summary.n_errors == 3
        by_id = {r["image_id"]: r for r in read_rows(mem)}
        assert all(r["path"].startswith("memory://") for r in by_id.values())
        for r in read_rows(plain):
            m = by_id[r["image_id"]]
            assert (m["primary"], m["error"] is None) == (r["primary"], r["error"] is None)
            assert np.allclose([m[c] or 0.0 for c in CLASSES], [r[c] or 0.0 for c in CLASSES], atol=1e-6)
    finally:
        fs.rm("/archive", recursive=True)


def test_refusals_name_the_problem(bundle: Path, archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ScoringError, match="does not exist"):
        score(bundle, tmp_path / "nowhere", tmp_path / "o.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoringError, match="no image files"):
        score(bundle, tmp_path / "empty", tmp_path / "o.parquet")
    with pytest.raises(ScoringError, match="unknown engine"):
        score(bundle, archive, tmp_path / "o.parquet", engine="spark")
    with pytest.raises(ScoringError, match="Ray's workers cannot read it"):
        score(bundle, "memory://anything", tmp_path / "o.parquet", engine="ray")
    not_scores = tmp_path / "other.parquet"
    not_scores.write_bytes(b"PAR1 but not really")
    with pytest.raises(ScoringError, match="not a DermaScan score file"):
        score(bundle, archive, not_scores)


def test_an_output_of_another_bundle_is_refused(bundle: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    score(bundle, archive / "clinic_a", out)
    other = tmp_path / "other-bundle"
    shutil.copytree(bundle, other)
    manifest = other / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": "', '"version": "v2-'))  # a new manifest digest
    with pytest.raises(ScoringError, match="another bundle"):
        score(other, archive, out)


def test_listing_is_recursive_sorted_and_skips_non_images(archive: Path) -> None:
    refs = list_images(archive)
    assert [r.path for r in refs] == sorted(r.path for r in refs)
    assert len(refs) == 25 and {r.image_id for r in refs} >= {"ISIC_0000000", "tiny", "truncated"}
    assert list_images(archive / "clinic_a" / "tiny.png")[0].image_id == "tiny"


def test_cli_score(bundle: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.parquet"
    runner = CliRunner()
    args = ["score", "--bundle", str(bundle), "--input", str(archive), "--output", str(out), "--batch-size", "8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "scored 25 image(s) (3 error rows)" in result.output
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "skipped 25" in result.output
    result = runner.invoke(app, [*args[:-2], "--engine", "dask"])
    # the CLI refuses a choice it does not offer before any work starts, and names the ones it does
    assert result.exit_code == 2 and "dask" in result.output and "local" in result.output and "ray" in result.output
