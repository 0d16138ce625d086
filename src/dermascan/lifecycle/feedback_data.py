"""Confirmed production cases as a new training dataset, in the ISIC 2018 Task 3 layout (brief 4.1, feedback tier).

``dermascan export-feedback --db URL --out DIR`` writes every answered image (the champion's or a canary's; never a
shadow row, whose case is the champion's) that has a kept image and a confirmed label among the seven classes:

* the label is the histopathology result when there is one, else the clinician's diagnosis
  (:func:`dermascan.store.feedback.confirmed_labels`); ``dx_type`` says which (``histo`` / ``consensus``, HAM10000's
  words); cases confirmed as ``other`` (outside the taxonomy) are counted and left out;
* no patient identifier is written, not even the store's keyed hash: ``lesion_id`` is a fresh keyed hash of
  (patient hash, lesion id) under a random key drawn for this export and then forgotten, so images of one lesion (or,
  without a lesion id, of one patient) stay together for the lesion-grouped split, and nothing links back to the
  store's hashes;
* ``dataset.json`` records what was exported, what was left out and why, and the new set's fingerprint.

The folder reads with :func:`dermascan.data.readers.read_dataset` and trains as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

import pandas as pd

from dermascan import _io
from dermascan.data.schema import GROUND_TRUTH_NAME, METADATA_NAME
from dermascan.errors import DermaScanError
from dermascan.taxonomy import CLASSES


class FeedbackExportError(DermaScanError, ValueError):
    """Nothing to export, or an output folder in the way, with the fix."""


def export_feedback(
    db_url: str, out: str | os.PathLike[str], since: dt.datetime | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Write the confirmed cases of the store at ``db_url`` to ``out`` (ISIC layout).

    Returns:
        The ``dataset.json`` record: counts per class and per label source, what was skipped, the fingerprint.

    Raises:
        FeedbackExportError: ``out`` is not empty (without ``overwrite``), or no case qualifies.
    """
    import fsspec
    from sqlalchemy import select

    from dermascan.data.readers import read_dataset
    from dermascan.store import check_schema, make_engine, session_factory
    from dermascan.store.feedback import confirmed_labels
    from dermascan.store.models import PredictionRow

    target = Path(out)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FeedbackExportError(f"{target} is not empty: choose a new folder or pass --overwrite")
    engine = make_engine(db_url)
    try:
        check_schema(engine)
        with session_factory(engine)() as session:
            query = select(PredictionRow).where(PredictionRow.role != "shadow")
            if since is not None:
                query = query.where(PredictionRow.created_at >= since)
            rows = list(session.scalars(query.order_by(PredictionRow.created_at, PredictionRow.id)))
            labels = confirmed_labels(session, [r.id for r in rows])
    finally:
        engine.dispose()
    key = secrets.token_bytes(32)  # this export's grouping key; never stored
    skipped = {"unconfirmed": 0, "other": 0, "no kept image": 0, "image unreadable": 0}
    gt_rows, meta_rows = [], []
    (target / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        if r.id not in labels:
            skipped["unconfirmed"] += 1
            continue
        label, source = labels[r.id]
        if label not in CLASSES:
            skipped["other"] += 1
            continue
        if not r.image_uri:
            skipped["no kept image"] += 1
            continue
        try:
            with fsspec.open(r.image_uri, "rb") as f:
                data = f.read()
        except OSError:
            skipped["image unreadable"] += 1
            continue
        image_id = f"FB_{r.id.replace('-', '')[:16]}"
        ext = Path(r.image_uri).suffix.lower() or ".jpg"
        _io.write_bytes(target / "images" / f"{image_id}{ext}", data)
        group = f"{r.patient_hash}:{r.lesion_id}" if r.lesion_id else r.patient_hash
        lesion = "FBL_" + hmac.new(key, group.encode(), hashlib.sha256).hexdigest()[:16]
        gt_rows.append({"image": image_id, **{c: float(c == label) for c in CLASSES}})
        meta_rows.append(
            {
                "image_id": image_id,
                "lesion_id": lesion,
                "dx": label.lower(),
                "dx_type": "histo" if source == "histopathology" else "consensus",
                "localization": r.body_site,
                "clinic_id": r.clinic_id,
            }
        )
    if not gt_rows:
        raise FeedbackExportError(
            f"no confirmed case with a kept image in {db_url} ({skipped}): serve with --keep-images DIR (keep_images) "
            "and record histopathology or clinician diagnoses through the feedback API"
        )
    _io.write_csv(target / GROUND_TRUTH_NAME, pd.DataFrame(gt_rows))
    _io.write_csv(target / METADATA_NAME, pd.DataFrame(meta_rows))
    index = read_dataset(target)
    meta = pd.DataFrame(meta_rows)
    record = {
        **{k: v for k, v in index.record().items() if k != "root"},
        "source": "dermascan store (confirmed production cases)",
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "since": since.isoformat() if since else None,
        "label_sources": meta["dx_type"].value_counts().to_dict(),
        "skipped": skipped,
    }
    _io.write_json(target / "dataset.json", record)
    return record


__all__ = ["FeedbackExportError", "export_feedback"]
