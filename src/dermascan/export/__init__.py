"""Export a trained run to a deployable bundle, check it against the eager model, and benchmark it.

``export_bundle(run, out, fmt="onnx"|"torchscript", precision="fp32"|"fp16"|"bf16"|"int8")`` writes a bundle
(:mod:`dermascan.inference.bundle`): the model file, the state dict (``weights.safetensors``, for the
PyTorch runtimes) and ``manifest.json``. Before the bundle appears at ``out`` it is loaded the way a
deployment loads it (checksums verified, through the :class:`~dermascan.inference.Predictor`) on every
runtime present that would serve it, and compared with the eager model on the run's validation images
(:mod:`dermascan.export.parity`); the export fails with :class:`ExportParityError` when parity fails, and
nothing is left at ``out``.

What ``--precision`` means, per format and runtime:

=========  ==========================================  ==============================================
precision  ONNX (``model.onnx``)                       TorchScript (``model.ts``)
=========  ==========================================  ==============================================
fp32       fp32 graph. ONNX Runtime and OpenVINO       traced in fp32
           compute in fp32 (OpenVINO's precision hint
           is pinned to f32, never its silent bf16).
fp16       fp16 graph between float32 casts, for       traced after ``.half()`` between float32
           GPUs: ONNX Runtime's CUDA/TensorRT          casts; for CUDA (runs, slowly, on CPU too)
           providers. On a CPU, OpenVINO runs it in
           f32 with the fp16-rounded weights; ONNX
           Runtime's CPU provider is refused.
bf16       the fp32 graph (ONNX convolutions have no   traced after ``.to(bfloat16)`` between
           bf16 type); OpenVINO computes in bf16       float32 casts (oneDNN bf16 on CPUs with
           (native with AVX512_BF16 or AMX), ONNX      AVX512_BF16/AMX)
           Runtime in fp32.
int8       CNNs: the fp32 graph quantized after        refused (quantize an ONNX bundle)
           training (QDQ form, :mod:`dermascan.export.
           quantize`), calibrated on the run's
           training images; OpenVINO and ONNX Runtime
           run int8 kernels (AVX512-VNNI, AMX). ViTs
           are refused: their attention map does not
           survive int8 on OpenVINO.
=========  ==========================================  ==============================================

Parity criteria (:mod:`dermascan.export.parity`): fp32, probabilities within 1e-4 of the eager model;
fp16/bf16/int8, the primary diagnosis and the melanoma flag agree on at least 99.5% of the validation images
and 95% of the displayed heat maps are within 0.1. An int8 graph that fails is tried once more with its
first convolution and last stage in float. The PyTorch runtimes run an int8 bundle's fp32 weights
(``weights.safetensors``), in fp32.

This package imports torch only inside the functions that export; the benchmark worker
(``python -m dermascan.export.benchmark``) stays torch-free for the ONNX runtimes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermascan.decision import UncalibratedWarning
from dermascan.export.parity import ExportParityError, ParityReport
from dermascan.export.quantize import DEFAULT_CALIBRATION_IMAGES, QuantizationError
from dermascan.inference.bundle import (
    MANIFEST_NAME,
    MODEL_FILES,
    MODEL_FORMATS,
    PRECISIONS,
    WEIGHTS_FILE,
    ModelCard,
    is_bundle,
    run_card,
    sha256_file,
    write_manifest,
)
from dermascan.runs import CONFIG_FILE, SPLITS_FILE, load_run, resolve_checkpoint
from dermascan.taxonomy import API_NAMES, MELANOMA_INDEX

if TYPE_CHECKING:
    from torch import nn

    from dermascan.inference.predictor import ImageInput, Predictor

log = logging.getLogger(__name__)


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
        raise ValueError(f"int8 export is for CNNs; {card.arch} is a {card.family} whose attention map does not "
                         "survive int8 on OpenVINO: use --precision bf16")
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
        calibration = _calibration_batches(model, card, calibration_images, run_path, max_calibration_images)
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
        for float_ends in attempts:
            outputs = _write_model(graph, tmp, fmt, precision, card.preprocessing.input_size, calibration,
                                   float_ends)
            manifest = _manifest(card, run_path, loaded.hparams, op_raw, fmt, precision, outputs, kind,
                                 include_weights)
            if calibration is not None:
                manifest["model"]["quantization"] = {
                    "method": "post-training static, QDQ (onnxruntime.quantization)", "weights": "int8 per channel",
                    "activations": "uint8 per tensor, MinMax", "calibration_images": sum(len(b) for b in calibration),
                    "float_layers": "first convolution and last stage" if float_ends else "none",
                }
            write_manifest(tmp, manifest)
            try:
                reports = check_bundle_parity(tmp, model, card, kind, images, precision, parity_runtimes)
                break
            except ExportParityError as e:
                failures.append(e)
                if len(failures) < len(attempts):
                    log.warning("all-int8 failed parity (%s); trying again with the first convolution and the last "
                                "stage in float", e)
        else:
            raise ExportParityError(" | then, with the first convolution and last stage in float: ".join(
                str(e) for e in failures), [r for e in failures for r in e.reports])
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


def check_bundle_parity(
    bundle_dir: Path,
    model: nn.Module,
    card: ModelCard,
    heatmap_kind: str | None,
    images: Sequence[ImageInput],
    precision: str,
    runtimes: Sequence[str] | None = None,
) -> list[ParityReport]:
    """Compare a written bundle, loaded on each runtime, with the eager fp32 model.

    Raises:
        ExportParityError: any runtime fails its criterion, or none can run the bundle.
    """
    from dermascan.export.parity import compare, prepare_batches
    from dermascan.inference.predictor import Predictor

    reference = _reference_predictor(model, card, heatmap_kind)
    batches, errors = prepare_batches(reference, images)
    if errors:
        log.warning("parity: %d image(s) skipped: %s", len(errors), "; ".join(errors[:3]))
    if not batches:
        raise ValueError(f"none of the {len(images)} parity images could be read: {errors[:3]}")
    ref_out = [reference.infer(x) for x in batches]
    fmt = json.loads((bundle_dir / MANIFEST_NAME).read_text())["model"]["format"]
    names = list(runtimes) if runtimes is not None else parity_runtimes_for(fmt, precision)
    if not names:
        raise ExportParityError(
            f"no runtime here can check a {precision} {fmt} bundle (fp16 ONNX needs onnxruntime-gpu or "
            "openvino): install one, or export another precision", []
        )
    reports = []
    for rt in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncalibratedWarning)  # already said once, when the run was loaded
            candidate = Predictor.from_path(bundle_dir, runtime=rt, device=_parity_device(rt))
        reports.append(compare(reference, candidate, batches, precision, reference_outputs=ref_out))
        candidate.backend.close()
    failed = [r for r in reports if not r.passed]
    if failed:
        raise ExportParityError(
            "export parity failed: " + "; ".join(r.summary() for r in failed)
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


def split_images(run_dir: Path, split: str = "val") -> list[Path]:
    """Paths of a run's images of one split (``splits.csv`` + the dataset in ``config.yaml``).

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
    ids = splits.loc[splits["split"] == split, "image_id"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's lesion-id warning concerns training, not parity
        frame = read_dataset(root, verify_images=False).frame
    paths = dict(zip(frame["image_id"].astype(str), frame["path"], strict=True))
    return [Path(paths[i]) for i in ids if i in paths]


# ------------------------------------------------------------------------------------------ internals


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


def _reference_predictor(model: nn.Module, card: ModelCard, heatmap_kind: str | None) -> Predictor:
    """The eager fp32 model on CPU behind a Predictor: what parity compares with, and what preprocesses."""
    from dermascan.inference.predictor import Predictor
    from dermascan.inference.runtimes import backend_for_model

    backend, _ = backend_for_model(model, "torch", "fp32", "cpu", heatmap=heatmap_kind is not None,
                                   family=card.family)
    return Predictor(backend, card, heatmap_kind)


def _calibration_batches(model: nn.Module, card: ModelCard, images: Sequence[ImageInput] | None, run_dir: Path,
                         limit: int) -> list[np.ndarray]:
    """Preprocessed calibration images for int8, in batches of 8 (default: the run's training split)."""
    from dermascan.export.parity import prepare_batches

    pool = _expand(images) if images is not None else split_images(run_dir, "train")
    if limit > 0 and len(pool) > limit:
        pool = [pool[i] for i in np.linspace(0, len(pool) - 1, limit).round().astype(int)]  # every class region
    batches, errors = prepare_batches(_reference_predictor(model, card, None), pool, batch_size=8)
    if errors:
        log.warning("calibration: %d image(s) skipped: %s", len(errors), "; ".join(errors[:3]))
    if not batches:
        raise ValueError("no calibration images could be read for int8: pass calibration_images "
                         "(--calibration-images DIR, a few hundred training photos)")
    return batches


def _write_model(graph: nn.Module, folder: Path, fmt: str, precision: str, input_size: int,
                 calibration: list[np.ndarray] | None = None, float_ends: bool = False) -> list[str]:
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


def _manifest(card: ModelCard, run_dir: Path, hparams: dict[str, Any], op_raw: dict[str, Any] | None, fmt: str,
              precision: str, outputs: list[str], kind: str | None, with_weights: bool) -> dict[str, Any]:
    run, ckpt = resolve_checkpoint(run_dir)
    size = card.preprocessing.input_size
    model: dict[str, Any] = {
        "format": fmt,
        "file": MODEL_FILES[fmt],
        "precision": precision,
        "input": {"name": "image", "shape": ["batch", 3, size, size], "dtype": "float32",
                  "layout": "NCHW, RGB, normalised with preprocessing.mean/std"},
        "outputs": outputs,
        "heatmap": kind,
    }
    if fmt == "onnx":
        from dermascan.export.onnx import OPSET

        model["opset"] = OPSET
    return {
        "name": card.name,
        "version": card.version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": card.arch,
        "family": card.family,
        "classes": list(card.classes),
        "class_names": {c: API_NAMES[c] for c in card.classes},
        "melanoma_index": MELANOMA_INDEX,
        "preprocessing": card.preprocessing.to_dict(),
        "decision": card.policy.to_dict(),
        "model": model,
        "weights": {"file": WEIGHTS_FILE, "format": "safetensors", "dtype": "float32"} if with_weights else None,
        "fingerprints": _fingerprints(run, ckpt, hparams),
        "evaluation": _evaluation_summary(run, op_raw),
        "source": {"run": run.resolve().name, "checkpoint": ckpt.name},
        "software": _software(),
    }


def _fingerprints(run: Path, ckpt: Path, hparams: dict[str, Any]) -> dict[str, Any]:
    config_file = run / CONFIG_FILE
    if config_file.is_file():
        config = sha256_file(config_file)
    else:
        config = hashlib.sha256(json.dumps(hparams.get("config", {}), sort_keys=True, default=str).encode()).hexdigest()
    return {"data": hparams.get("data_fingerprint"), "config": config, "checkpoint": sha256_file(ckpt)}


def _scalars(d: Any, prefix: str = "", depth: int = 2) -> dict[str, Any]:
    """Flatten the numeric/text leaves of a nested dict, ``depth`` levels deep (arrays and lists dropped)."""
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool | int | float | str) or v is None:
            out[key] = v
        elif isinstance(v, dict) and depth > 1:
            out.update(_scalars(v, f"{key}.", depth - 1))
    return out


def _evaluation_summary(run: Path, op_raw: dict[str, Any] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if op_raw is not None:
        summary["operating_point"] = _scalars({k: v for k, v in op_raw.items() if k != "risk_bands"})
    metrics = sorted(run.glob("metrics.json")) + sorted(run.glob("*/metrics.json"))
    for path in metrics:
        with contextlib.suppress(ValueError, OSError):
            summary[path.relative_to(run).as_posix()] = _scalars(json.loads(path.read_text()))
    return summary


def _software() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("dermascan", "torch", "torchvision", "onnx", "onnxruntime", "openvino"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def run_benchmark(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`dermascan.export.benchmark.run_benchmark` (imported lazily: it is torch-free)."""
    from dermascan.export.benchmark import run_benchmark as _run

    return _run(*args, **kwargs)


__all__ = [
    "ExportParityError",
    "ParityReport",
    "QuantizationError",
    "check_bundle_parity",
    "export_bundle",
    "parity_runtimes_for",
    "run_benchmark",
    "split_images",
]
