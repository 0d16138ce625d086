"""The manifest an export writes: what the model is, how to use it, where it came from."""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dermascan.inference.bundle import MODEL_FILES, WEIGHTS_FILE, ModelCard, sha256_file
from dermascan.runs import CONFIG_FILE, read_data_record, resolve_checkpoint
from dermascan.taxonomy import API_NAMES, MELANOMA_INDEX


def bundle_manifest(
    card: ModelCard,
    run_dir: Path,
    hparams: dict[str, Any],
    op_raw: dict[str, Any] | None,
    fmt: str,
    precision: str,
    outputs: list[str],
    kind: str | None,
    with_weights: bool,
) -> dict[str, Any]:
    run, ckpt = resolve_checkpoint(run_dir)
    size = card.preprocessing.input_size
    model: dict[str, Any] = {
        "format": fmt,
        "file": MODEL_FILES[fmt],
        "precision": precision,
        "input": {
            "name": "image",
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW, RGB, normalised with preprocessing.mean/std",
        },
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
        "data": _data_summary(run),
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
    record = read_data_record(run) or {}
    data = hparams.get("data_fingerprint") or record.get("fingerprint")
    return {"data": data, "config": config, "checkpoint": sha256_file(ckpt)}


def _data_summary(run: Path) -> dict[str, Any] | None:
    """The run's data record without the training machine's folder (a bundle travels)."""
    record = read_data_record(run)
    return None if record is None else {k: v for k, v in record.items() if k != "root"}


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
