"""Model bundles: the folder that is deployed, its ``manifest.json``, and the checks made before loading it.

A bundle is a flat folder::

    B/manifest.json          what the model is and how to use it (below); lists every other file
    B/model.onnx             the graph (``--format onnx``), or
    B/model.ts               a TorchScript archive (``--format torchscript``)
    B/weights.safetensors    the state dict (optional): lets the PyTorch runtimes run the same bundle

``manifest.json`` holds the name and version, architecture and family, class order, preprocessing,
calibration temperature, melanoma threshold and risk bands, data and config fingerprints, an evaluation
summary, the export parity figures, and the sha256 and size of every file. :func:`load_bundle` recomputes
every checksum first and refuses a bundle with a changed, missing or unlisted file, naming it.

The manifest cannot hold its own checksum; :func:`bundle_digest` (the sha256 of ``manifest.json``) pins the
whole bundle, since the manifest lists the hash of every other file. A registry or deployment that records
the digest passes it to :func:`load_bundle` (``digest=``) and an edited manifest (say, a changed threshold)
is refused too.

Security: nothing in a bundle is unpickled as code. ONNX is a protobuf; ``weights.safetensors`` is raw
tensors; a TorchScript archive is loaded with ``torch.jit.load``, which runs TorchScript IR (a restricted,
statically typed language with no access to Python builtins) and unpickles only its constants with
TorchScript's own restricted unpickler, never ``pickle.load`` of arbitrary objects. The checksums stop a
tampered file from getting that far.

This module imports neither torch nor onnx.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermascan import _io
from dermascan.config import Preprocessing
from dermascan.data.fingerprint import file_sha256
from dermascan.decision import DecisionPolicy, UncalibratedWarning
from dermascan.errors import DermaScanError
from dermascan.inference.embedding import EMBEDDING_FILE, EmbeddingProjection, read_projection
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

if TYPE_CHECKING:
    from dermascan.runs import Run

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
#: Version of the manifest layout; bumped on an incompatible change.
FORMAT_VERSION = 1
MODEL_FORMATS = ("onnx", "torchscript")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}
WEIGHTS_FILE = "weights.safetensors"


class BundleError(DermaScanError, ValueError):
    """A bundle that must not be loaded (tampered, incomplete, malformed), with the file and the fix."""


# ------------------------------------------------------------------------------------------ model card


@dataclass(frozen=True)
class ModelCard:
    """What a Predictor needs to know about a model besides its weights.

    Attributes:
        name: model name, e.g. ``dermascan-resnet50``.
        version: model version reported with every prediction (``v2.4.1`` or ``<run>-<date>``).
        arch: registry architecture name (``resnet50``).
        family: ``cnn`` (class-activation heat maps) or ``vit`` (attention heat maps).
        classes: class codes in output order (the ISIC 2018 order).
        preprocessing: the eval preprocessing the model was trained with.
        policy: calibration, threshold and risk bands.
    """

    name: str
    version: str
    arch: str
    family: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)


# --------------------------------------------------------------------------------------------- files


#: Hex sha256 of a file, read in 1 MiB chunks (one implementation, shared with the dataset fingerprint).
sha256_file = file_sha256


def _bundle_files(folder: Path) -> list[str]:
    """Every file under ``folder`` except the manifest, as POSIX relative paths, sorted."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
        if p.relative_to(folder).as_posix() != MANIFEST_NAME
    )


def file_table(folder: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256": ..., "bytes": ...}}`` for every file of a bundle but the manifest."""
    folder = Path(folder)
    return {
        rel: {"sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}
        for rel in _bundle_files(folder)
    }


def write_manifest(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Add the checksum table of ``folder``'s files to ``manifest`` and write ``folder/manifest.json``.

    Call it last: any file written into the folder afterwards makes the bundle fail verification.
    """
    folder = Path(folder)
    manifest = {**manifest, "format_version": FORMAT_VERSION, "files": file_table(folder)}
    return _io.write_json(folder / MANIFEST_NAME, manifest)


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse ``manifest.json`` without verifying files (use :func:`verify_bundle` before trusting it)."""
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise BundleError(f"bundle folder {folder} does not exist (write one with `dermascan export`)")
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle: {MANIFEST_NAME} is missing (rerun `dermascan export`)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise BundleError(f"{path}: not valid JSON ({e}); the bundle is damaged, export it again") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path}: no 'files' table; the bundle is damaged or not a DermaScan bundle")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: manifest format_version {version!r}, this DermaScan reads {FORMAT_VERSION}; export it again"
        )
    return manifest


def verify_bundle(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of a bundle against its manifest; return the manifest.

    Refused, with the file named: a listed file that is missing, a file whose sha256 or size differs, a file
    in the folder that the manifest does not list (something was added), a path that leaves the folder.

    Raises:
        BundleError: the first problem found, naming the file.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed: dict[str, Any] = manifest["files"]
    problems: list[str] = []
    for rel, entry in listed.items():
        path = (folder / rel).resolve()
        if Path(rel).is_absolute() or ".." in Path(rel).parts or folder.resolve() not in path.parents:
            raise BundleError(f"{folder}: manifest lists {rel!r}, which is outside the bundle; refusing it")
        if not path.is_file():
            problems.append(f"{rel} is listed in the manifest but missing")
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            problems.append(f"{rel} has {size} bytes, the manifest says {entry.get('bytes')} (modified)")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"{rel} does not match its sha256 in the manifest (modified or corrupted)")
    extra = sorted(set(_bundle_files(folder)) - set(listed))
    problems += [f"{rel} is not listed in the manifest (added after export)" for rel in extra]
    if problems:
        raise BundleError(
            f"bundle {folder} failed verification: {'; '.join(problems)}. Do not use it: export it again "
            "or fetch an intact copy."
        )
    return manifest


# ------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Bundle:
    """A verified bundle.

    Attributes:
        path: the bundle folder.
        manifest: the parsed ``manifest.json``.
        card: name, version, architecture, classes, preprocessing and decision policy.
        model_format: ``onnx`` or ``torchscript``.
        model_file: path of the model file.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``, as exported (see :mod:`dermascan.export`).
        heatmap: kind of maps the graph returns as its second output (``cam`` / ``attention``), or ``None``
            when the graph returns logits only.
        weights_file: the state dict, when the bundle carries one (for the PyTorch runtimes).
        projection: the embedding projection (``embedding.json``, see :mod:`dermascan.inference.embedding`), when
            the graph returns the penultimate features and the export fitted one.
    """

    path: Path
    manifest: dict[str, Any]
    card: ModelCard
    model_format: str
    model_file: Path
    precision: str
    heatmap: str | None
    weights_file: Path | None
    projection: EmbeddingProjection | None = None


def bundle_digest(folder: str | os.PathLike[str]) -> str:
    """sha256 of ``manifest.json``: one value that pins the whole bundle (the manifest hashes every file)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle: {MANIFEST_NAME} is missing")
    return sha256_file(path)


def load_bundle(folder: str | os.PathLike[str], verify: bool = True, digest: str | None = None) -> Bundle:
    """Verify a bundle (every checksum, no missing or extra file) and parse its manifest.

    Args:
        folder: the bundle folder.
        verify: recompute the checksums (always, except in tests that time the loading itself).
        digest: expected :func:`bundle_digest` (from a registry); refuses an edited manifest.

    Raises:
        BundleError: tampered, incomplete or malformed bundle, naming the problem.
    """
    folder = Path(folder)
    if digest is not None:
        actual = bundle_digest(folder)
        if actual != digest.lower():
            raise BundleError(
                f"bundle {folder}: manifest digest {actual[:16]}... differs from the pinned digest {digest[:16]}...; "
                "the manifest was edited after export (or this is another bundle)"
            )
    manifest = verify_bundle(folder) if verify else read_manifest(folder)
    try:
        model = manifest["model"]
        fmt, precision = model["format"], model["precision"]
        if fmt not in MODEL_FORMATS:
            raise BundleError(f"{folder}: model format {fmt!r} is not one of {MODEL_FORMATS}")
        if precision not in PRECISIONS:
            raise BundleError(f"{folder}: precision {precision!r} is not one of {PRECISIONS}")
        classes = tuple(manifest["classes"])
        if classes != CLASSES or manifest.get("melanoma_index", MELANOMA_INDEX) != MELANOMA_INDEX:
            raise BundleError(f"{folder}: class order {classes} differs from the ISIC 2018 order {CLASSES}")
        card = ModelCard(
            name=str(manifest["name"]),
            version=str(manifest["version"]),
            arch=str(manifest["architecture"]),
            family=str(manifest["family"]),
            classes=classes,
            preprocessing=Preprocessing.from_dict(manifest["preprocessing"]),
            policy=DecisionPolicy.from_dict(manifest["decision"]),
        )
        model_file = folder / model["file"]
        weights = manifest.get("weights")
        weights_file = folder / weights["file"] if weights else None
        embedding = manifest.get("embedding")
        projection_file = folder / embedding["file"] if embedding else None
    except KeyError as e:
        raise BundleError(f"{folder}/{MANIFEST_NAME}: required field {e} is missing; export the bundle again") from e
    except (TypeError, ValueError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"{folder}/{MANIFEST_NAME}: invalid field ({e}); export the bundle again") from e
    for f in (model_file, weights_file, projection_file):
        if f is not None and f.name not in manifest["files"]:
            raise BundleError(f"{folder}: {f.name} is used by the manifest but not covered by its checksums")
    try:
        projection = read_projection(projection_file) if projection_file is not None else None
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{folder}/{EMBEDDING_FILE}: invalid ({e}); export the bundle again") from e
    if not card.policy.calibrated:
        warnings.warn(
            f"bundle {folder} is uncalibrated (no operating point): the argmax decides melanoma and there are "
            "no risk bands",
            UncalibratedWarning,
            stacklevel=2,
        )
    return Bundle(folder, manifest, card, fmt, model_file, precision, model.get("heatmap"), weights_file, projection)


# ---------------------------------------------------------------------------------------------- runs


def default_version(run_dir: Path, checkpoint: Path) -> str:
    """``<run name>-<checkpoint date>``: stable for a run, so a run and its bundles report the same version."""
    stamp = datetime.fromtimestamp(checkpoint.stat().st_mtime, tz=UTC)
    return f"{run_dir.resolve().name}-{stamp:%Y%m%d}"


def model_card(
    loaded: Any, policy: DecisionPolicy | None = None, name: str | None = None, version: str | None = None
) -> ModelCard:
    """The card of a live model (a :class:`~dermascan.models.LoadedModel`) under a decision policy.

    Args:
        loaded: the loaded checkpoint.
        policy: its decision policy (default: uncalibrated).
        name: model name (default ``dermascan-<arch>``).
        version: model version (default ``<arch>-checkpoint``).
    """
    from dermascan.models import model_info

    return ModelCard(
        name=name or f"dermascan-{loaded.arch.replace(':', '-')}",
        version=version or f"{loaded.arch}-checkpoint",
        arch=loaded.arch,
        family=model_info(loaded.arch)["family"],
        classes=tuple(loaded.classes),
        preprocessing=loaded.preprocessing,
        policy=policy or DecisionPolicy(),
    )


def run_card(run: Run, name: str | None = None, version: str | None = None) -> ModelCard:
    """The card of a loaded run (:func:`dermascan.runs.load_run`), with the run's decision policy.

    Args:
        run: the run, loaded with its model.
        name: model name (default ``dermascan-<arch>``).
        version: model version (default :func:`default_version`).
    """
    return model_card(run.loaded, run.policy(), name, version or default_version(run.path, run.checkpoint))


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a ``manifest.json``."""
    return (Path(path) / MANIFEST_NAME).is_file()


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_FILES",
    "MODEL_FORMATS",
    "PRECISIONS",
    "WEIGHTS_FILE",
    "Bundle",
    "BundleError",
    "DecisionPolicy",
    "ModelCard",
    "bundle_digest",
    "default_version",
    "file_table",
    "is_bundle",
    "load_bundle",
    "model_card",
    "read_manifest",
    "run_card",
    "sha256_file",
    "verify_bundle",
    "write_manifest",
]
