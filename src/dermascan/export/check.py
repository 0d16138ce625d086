"""The export's parity check: a written bundle, loaded as a deployment loads it, against the eager model."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermascan.decision import UncalibratedWarning
from dermascan.export.parity import ExportParityError, ParityReport
from dermascan.inference.bundle import MANIFEST_NAME, ModelCard
from dermascan.runs import SPLITS_FILE, resolve_checkpoint

if TYPE_CHECKING:
    from torch import nn

    from dermascan.inference.predictor import ImageInput, Predictor

log = logging.getLogger(__name__)


def check_bundle_parity(
    bundle_dir: Path,
    model: nn.Module,
    card: ModelCard,
    heatmap_kind: str | None,
    images: Sequence[ImageInput],
    precision: str,
    runtimes: Sequence[str] | None = None,
    progress: bool = False,
    cache: dict[str, Any] | None = None,
) -> list[ParityReport]:
    """Compare a written bundle, loaded on each runtime, with the eager fp32 model.

    ``cache``: a dict the preprocessed images and the eager model's outputs are kept in, for the next call with
    the same model and images (the int8 ladder checks up to five graphs against the one reference).

    Raises:
        ExportParityError: any runtime fails its criterion, or none can run the bundle.
    """
    from dermascan.export.parity import compare, prepare_batches
    from dermascan.inference.predictor import Predictor

    cache = {} if cache is None else cache
    if not cache:
        reference = reference_predictor(model, card, heatmap_kind)
        label = "parity: reading images" if progress else None
        batches, errors = prepare_batches(reference, images, progress=label)
        if errors:
            log.warning("parity: %d image(s) skipped: %s", len(errors), "; ".join(errors[:3]))
        if not batches:
            raise ValueError(f"none of the {len(images)} parity images could be read: {errors[:3]}")
        cache.update(reference=reference, batches=batches, outputs=[reference.infer(x) for x in batches])
    reference, batches, ref_out = cache["reference"], cache["batches"], cache["outputs"]
    fmt = json.loads((bundle_dir / MANIFEST_NAME).read_text())["model"]["format"]
    names = list(runtimes) if runtimes is not None else parity_runtimes_for(fmt, precision)
    if not names:
        raise ExportParityError(
            f"no runtime here can check a {precision} {fmt} bundle (fp16 ONNX needs onnxruntime-gpu or "
            "openvino): install one, or export another precision",
            [],
        )
    reports = []
    for rt in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncalibratedWarning)  # already said once, when the run was loaded
            candidate = Predictor.from_path(bundle_dir, runtime=rt, device=_parity_device(rt))
        reports.append(compare(reference, candidate, batches, precision, reference_outputs=ref_out, progress=progress))
        candidate.backend.close()
    failed = [r for r in reports if not r.passed]
    if failed:
        raise ExportParityError(
            "export parity failed: "
            + "; ".join(r.summary() for r in failed)
            + ". The bundle was not written. Check the precision (fp32 is exact), or report the runtime bug.",
            reports,
        )
    return reports


def parity_runtimes_for(fmt: str, precision: str) -> list[str]:
    """Runtimes present here that would serve a bundle of this format and precision (not the eager ones)."""
    from dermascan.inference.runtimes import unavailable_reason

    candidates = ["torchscript"] if fmt == "torchscript" else ["onnxruntime", "openvino"]
    return [rt for rt in candidates if unavailable_reason(rt, fmt, precision) is None]


def _parity_device(runtime: str) -> str | None:
    # Parity runs where the bundle will be served by default; torch runtimes on CPU keep the check reproducible.
    return "cpu" if runtime in ("torch", "torch-compile", "torchscript") else None


def split_images(run_dir: Path, split: str = "val", one_per_lesion: bool = False) -> list[Path]:
    """Paths of a run's images of one split (``splits.csv`` + the dataset in ``config.yaml``).

    With ``one_per_lesion``, only the first image of each lesion: a sample of independent cases, as new traffic is.

    Raises:
        ValueError: the run has no splits or its dataset cannot be found, with the fix.
    """
    from dermascan.data.readers import read_dataset
    from dermascan.runs import read_config

    run_dir = resolve_checkpoint(run_dir)[0]
    splits_path, config = run_dir / SPLITS_FILE, read_config(run_dir)
    if not splits_path.is_file() or config is None:
        raise ValueError(
            f"{run_dir} has no splits.csv/config.yaml to find its {split} images; pass them explicitly "
            f"({'--parity-images' if split == 'val' else '--calibration-images'} DIR)"
        )
    data = config.data
    candidates = [Path(data), run_dir / data] if data else []
    root = next((c for c in candidates if c.is_dir()), None)
    if root is None:
        raise ValueError(
            f"the dataset of run {run_dir} ({data!r} in config.yaml) is not here; pass its {split} images "
            f"explicitly ({'--parity-images' if split == 'val' else '--calibration-images'} DIR)"
        )
    import pandas as pd

    splits = pd.read_csv(splits_path, dtype={"image_id": str})
    part = splits.loc[splits["split"] == split]
    if one_per_lesion and "lesion_id" in part:
        part = part.drop_duplicates("lesion_id")
    ids = part["image_id"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's lesion-id warning concerns training, not parity
        frame = read_dataset(root, metadata=config.metadata or None, verify_images=False).frame
    paths = dict(zip(frame["image_id"].astype(str), frame["path"], strict=True))
    return [Path(paths[i]) for i in ids if i in paths]


def reference_predictor(model: nn.Module, card: ModelCard, heatmap_kind: str | None) -> Predictor:
    """The eager fp32 model on CPU behind a Predictor: what parity compares with, and what preprocesses."""
    from dermascan.inference.predictor import Predictor
    from dermascan.inference.runtimes import backend_for_model

    backend, _ = backend_for_model(model, "torch", "fp32", "cpu", heatmap=heatmap_kind is not None, family=card.family)
    return Predictor(backend, card, heatmap_kind)
