"""``export_bundle``: a run (or checkpoint) to a verified, checksummed bundle (see :mod:`dermascan.export`)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermascan.export.check import check_bundle_parity, reference_predictor, split_images
from dermascan.export.manifest import bundle_manifest
from dermascan.export.parity import ExportParityError
from dermascan.export.quantize import DEFAULT_CALIBRATION_IMAGES
from dermascan.inference.bundle import (
    MODEL_FILES,
    MODEL_FORMATS,
    PRECISIONS,
    WEIGHTS_FILE,
    ModelCard,
    is_bundle,
    run_card,
    write_manifest,
)
from dermascan.inference.embedding import EMBEDDING_FILE, write_projection
from dermascan.monitoring.reference import REFERENCE_FILE
from dermascan.runs import load_run

if TYPE_CHECKING:
    from torch import nn

    from dermascan.inference.predictor import ImageInput

log = logging.getLogger(__name__)
#: Test images needed before the monitoring reference's predictions come from the test split alone.
MIN_HELD_OUT = 300


def export_bundle(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fmt: str = "onnx",
    precision: str = "fp32",
    parity_images: Sequence[ImageInput] | None = None,
    name: str | None = None,
    version: str | None = None,
    *,
    heatmap: bool = True,
    include_weights: bool = True,
    parity_runtimes: Sequence[str] | None = None,
    max_parity_images: int | None = None,
    calibration_images: Sequence[ImageInput] | None = None,
    max_calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    int8_float_ends: bool | None = None,
    overwrite: bool = False,
    progress: bool = False,
    reference: bool = True,
) -> Path:
    """Export a run (or a checkpoint) to a verified bundle at ``out_dir``.

    Args:
        run_dir: run folder (``best.ckpt``, else ``last.ckpt``; ``operating_point.json`` when evaluated) or a
            ``.ckpt`` file.
        out_dir: bundle folder to create (must not exist, or be empty, unless ``overwrite``).
        fmt: ``onnx`` (the main artifact) or ``torchscript``.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (see the module docstring for what each means).
        parity_images: images for the parity check (paths, folders of images, bytes, PIL, arrays). Default: the
            run's validation split (``splits.csv`` + the dataset named by ``config.yaml``).
        name: model name (default ``dermascan-<arch>``).
        version: model version, e.g. ``2.4.1`` (default ``<run name>-<checkpoint date>``).
        heatmap: give the graph the heat-map output (``maps``) besides ``logits``.
        include_weights: also store the state dict, so the bundle runs on eager PyTorch / torch.compile.
        parity_runtimes: runtimes to check (default: every one present that serves this format and precision).
        max_parity_images: use at most this many parity images (the first ones, in split order).
        calibration_images: ``int8`` only: images that fit the activation ranges (same kinds as
            ``parity_images``). Default: the run's training split; never the parity images.
        max_calibration_images: ``int8`` only: use at most this many calibration images (spread evenly).
        int8_float_ends: ``int8`` only: keep the first convolution and the last stage in float (``True``), or
            not (``False``); ``None`` tries all-int8 and, if it fails parity, the mixed graph
            (:mod:`dermascan.export.quantize`).
        overwrite: replace an existing bundle at ``out_dir``.
        progress: progress bars (stderr) for the calibration and parity passes.
        reference: write the training reference drift detection reads (``reference.json``: feature quantiles of
            the training split, flag rate, class mix and an embedding sample on the validation split; see
            :mod:`dermascan.monitoring.reference`). Skipped, with a warning, when the run's data set is not here.

    Returns:
        ``out_dir``.

    Raises:
        ExportParityError: the exported model disagrees with the eager model (figures in the message and in
            ``.reports``); nothing is written at ``out_dir``.
        ValueError: bad ``fmt``/``precision``, no parity (or, for int8, calibration) images, or ``out_dir``
            is in the way.
        QuantizationError: ``int8`` and the quantizer failed.
    """
    if fmt not in MODEL_FORMATS:
        raise ValueError(f"format must be one of {', '.join(MODEL_FORMATS)}, got {fmt!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and fmt != "onnx":
        raise ValueError("int8 is an ONNX precision (a quantized QDQ graph); export --format onnx --precision int8")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (overwrite and is_bundle(out)):
        raise ValueError(
            f"{out} exists and is not empty; choose a new folder"
            + (" or pass overwrite=True (--overwrite) to replace the bundle there" if is_bundle(out) else "")
        )
    run_path = Path(run_dir)
    run = load_run(run_path)
    loaded, card, op_raw = run.loaded, run_card(run, name, version), run.operating_point()
    # The bundle's Predictor predicts single-view: a threshold locked on TTA logits would not hold there.
    card.policy.check_views(False, "an exported bundle")
    if precision == "int8" and card.family != "cnn":
        # Measured: a vit_tiny's last-block attention map on OpenVINO int8 differed from the eager one by 1.0
        # (normalised, the whole range) while its decisions agreed; a wrong heat map is worse than none.
        raise ValueError(
            f"int8 export is for CNNs; {card.arch} is a {card.family} whose attention map does not "
            "survive int8 on OpenVINO: use --precision bf16"
        )
    images = _expand(parity_images) if parity_images is not None else split_images(run_path, "val")
    if max_parity_images is not None:
        images = images[:max_parity_images]
    if not images:
        raise ValueError("no parity images: pass parity_images (e.g. a few validation photos)")

    from dermascan.inference.runtimes import with_heatmap_head

    model = loaded.model.eval()
    graph, kind = with_heatmap_head(model) if heatmap else (model, None)
    calibration = None
    if precision == "int8":
        calibration = _calibration_batches(model, card, calibration_images, run_path, max_calibration_images, progress)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # int8: all layers first; when that fails the gate, the stem and the last stage stay in float.
    ladder = [int8_float_ends] if int8_float_ends is not None else [False, True]
    attempts = ladder if precision == "int8" else [False]
    failures: list[ExportParityError] = []
    try:
        if include_weights:
            _write_weights(model, tmp / WEIGHTS_FILE)
        has_reference, has_projection = (
            _write_reference(model, card, run_path, tmp, kind) if reference else (False, False)
        )
        for float_ends in attempts:
            outputs = _write_model(graph, tmp, fmt, precision, card.preprocessing.input_size, calibration, float_ends)
            manifest = bundle_manifest(
                card, run_path, loaded.hparams, op_raw, fmt, precision, outputs, kind, include_weights
            )
            manifest["reference"] = {"file": REFERENCE_FILE} if has_reference else None
            manifest["embedding"] = {"file": EMBEDDING_FILE} if has_projection else None
            if calibration is not None:
                manifest["model"]["quantization"] = {
                    "method": "post-training static, QDQ (onnxruntime.quantization)",
                    "weights": "int8 per channel",
                    "activations": "uint8 per tensor, MinMax",
                    "calibration_images": sum(len(b) for b in calibration),
                    "float_layers": "first convolution and last stage" if float_ends else "none",
                }
            write_manifest(tmp, manifest)
            try:
                reports = check_bundle_parity(tmp, model, card, kind, images, precision, parity_runtimes, progress)
                break
            except ExportParityError as e:
                failures.append(e)
                if len(failures) < len(attempts):
                    log.warning(
                        "all-int8 failed parity (%s); trying again with the first convolution and the last "
                        "stage in float",
                        e,
                    )
        else:
            raise ExportParityError(
                " | then, with the first convolution and last stage in float: ".join(str(e) for e in failures),
                [r for e in failures for r in e.reports],
            )
        manifest["parity"] = [r.to_dict() for r in reports]
        write_manifest(tmp, manifest)  # the manifest is not in its own checksum table: rewriting it is safe
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in reports:
        log.info("parity %s", r.summary())
    return out


def _write_reference(
    model: nn.Module, card: ModelCard, run_dir: Path, folder: Path, kind: str | None
) -> tuple[bool, bool]:
    """Write the monitoring reference into the bundle folder, and the embedding projection beside it when the graph
    returns the penultimate features (a heat-map head, ``kind``). ``(reference written, projection written)``;
    no reference (warned) when the run's splits or data set are not here, since a bundle without one still
    serves (the monitor then says how to get one)."""
    from dermascan.monitoring.reference import ReferenceError, reference_from_images, write_reference

    try:
        train = split_images(run_dir, "train")
        # one image per lesion: a lesion photographed 3 times is one case, and a clustered sample's flag rate and
        # embeddings vary more than their count says (false drift alarms on steady traffic)
        val, test = (split_images(run_dir, s, one_per_lesion=True) for s in ("val", "test"))
    except ValueError as e:
        log.warning("no monitoring reference in the bundle: %s", e)
        return False, False
    # The predictions' reference comes from images the model never fitted. The validation split chose the
    # checkpoint and its melanomas the threshold, so it flags more than new traffic will (measured on a small run:
    # 0.40 on validation + test against 0.33 on 9,000 new images): the test split alone when it is large enough,
    # else validation and test together (a test split of a hundred clustered lesions is off by as much).
    held_out = test if len(test) >= MIN_HELD_OUT else val + test
    if not train or not held_out:
        log.warning("no monitoring reference in the bundle: the run's train or held-out splits are empty")
        return False, False
    try:
        ref, projection = reference_from_images(reference_predictor(model, card, kind), train, held_out)
    except ReferenceError as e:
        log.warning("no monitoring reference in the bundle: %s", e)
        return False, False
    write_reference(folder, ref)
    if projection is not None:
        write_projection(folder, projection)
    return True, projection is not None


def _expand(images: Sequence[ImageInput]) -> list[ImageInput]:
    """Folders become their image files; everything else is kept as given."""
    from dermascan.inference.predictor import expand_paths

    out: list[ImageInput] = []
    for item in images:
        if isinstance(item, str | os.PathLike) and Path(item).is_dir():
            out.extend(expand_paths([item]))
        else:
            out.append(item)
    return out


def _calibration_batches(
    model: nn.Module,
    card: ModelCard,
    images: Sequence[ImageInput] | None,
    run_dir: Path,
    limit: int,
    progress: bool = False,
) -> list[np.ndarray]:
    """Preprocessed calibration images for int8, in batches of 8 (default: the run's training split)."""
    from dermascan.export.parity import prepare_batches

    pool = _expand(images) if images is not None else split_images(run_dir, "train")
    if limit > 0 and len(pool) > limit:
        pool = [pool[i] for i in np.linspace(0, len(pool) - 1, limit).round().astype(int)]  # every class region
    batches, errors = prepare_batches(
        reference_predictor(model, card, None), pool, batch_size=8, progress="int8 calibration" if progress else None
    )
    if errors:
        log.warning("calibration: %d image(s) skipped: %s", len(errors), "; ".join(errors[:3]))
    if not batches:
        raise ValueError(
            "no calibration images could be read for int8: pass calibration_images "
            "(--calibration-images DIR, a few hundred training photos)"
        )
    return batches


def _write_model(
    graph: nn.Module,
    folder: Path,
    fmt: str,
    precision: str,
    input_size: int,
    calibration: list[np.ndarray] | None = None,
    float_ends: bool = False,
) -> list[str]:
    if fmt == "onnx" and precision == "int8":
        from dermascan.export.onnx import export_onnx, output_names
        from dermascan.export.quantize import quantize_onnx

        fp32 = folder / "model.fp32.onnx"
        export_onnx(graph, fp32, input_size, "fp32")
        quantize_onnx(fp32, folder / MODEL_FILES["onnx"], calibration or [], keep_float_ends=float_ends)
        fp32.unlink()  # the bundle ships the quantized graph only (the eager fp32 weights travel apart)
    elif fmt == "onnx":
        from dermascan.export.onnx import export_onnx, output_names

        export_onnx(graph, folder / MODEL_FILES["onnx"], input_size, precision)
    else:
        from dermascan.export.onnx import output_names
        from dermascan.export.torchscript import export_torchscript

        export_torchscript(graph, folder / MODEL_FILES["torchscript"], input_size, precision)
    return output_names(graph, input_size)


def _write_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"arch": str(getattr(model, "arch", ""))})
