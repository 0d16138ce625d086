"""The run folder: the one module that knows its file names and reads them back.

A run folder (``dermascan train --out R``) holds::

    R/config.yaml            the resolved TrainConfig
    R/splits.csv             image_id, lesion_id, split (lesion-grouped)
    R/best.ckpt, last.ckpt   checkpoints (weights_only loadable)
    R/history.csv/.json      one row per epoch
    R/data.json              the data's record: fingerprint (ids, labels, image bytes), size, classes, splits
    R/operating_point.json   after `dermascan evaluate`: temperature, locked threshold, risk bands, tta

Training writes these files through the names defined here; evaluation, export, the Predictor and the CLI
read them through :func:`load_run` / :func:`read_operating_point`, so there is one reader of each file.
Loading a checkpoint imports torch (lazily, in :func:`load_run`); everything else here does not.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dermascan import _io
from dermascan.decision import DecisionPolicy, UncalibratedWarning
from dermascan.errors import DermaScanError
from dermascan.training.config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BEST_CHECKPOINT",
    "CONFIG_FILE",
    "DATA_FILE",
    "HISTORY_CSV",
    "HISTORY_JSON",
    "LAST_CHECKPOINT",
    "OPERATING_POINT_FILE",
    "SPLITS_FILE",
    "Run",
    "RunError",
    "UncalibratedWarning",
    "load_run",
    "read_config",
    "read_data_record",
    "read_operating_point",
    "resolve_checkpoint",
    "write_data_record",
    "write_operating_point",
]

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.csv"
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
OPERATING_POINT_FILE = "operating_point.json"
DATA_FILE = "data.json"


class RunError(DermaScanError, FileNotFoundError):
    """A path that is not a usable run folder, with what is missing and how to make it."""


def resolve_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(run folder, checkpoint file)`` of a run folder (its ``best.ckpt``, else ``last.ckpt``) or a ``.ckpt``.

    Raises:
        RunError: neither a checkpoint nor a run folder holding one.
    """
    path = Path(path)
    if path.is_file():
        return path.parent, path
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        if (path / name).is_file():
            return path, path / name
    raise RunError(
        f"{path} is neither a model bundle (manifest.json), a run folder ({BEST_CHECKPOINT}/{LAST_CHECKPOINT}) "
        "nor a checkpoint: pass the --out folder of `dermascan train`"
    )


def read_config(run_dir: str | os.PathLike[str]) -> TrainConfig | None:
    """The run's resolved :class:`TrainConfig` from ``config.yaml`` (``None`` when the run has none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return TrainConfig.from_dict(yaml.safe_load(path.read_text()) or {})
    except (ValueError, TypeError, yaml.YAMLError) as e:
        raise RunError(f"{path}: not a valid training config ({e}); it is written by `dermascan train`") from e


def read_operating_point(run_dir: str | os.PathLike[str]) -> tuple[DecisionPolicy, dict[str, Any] | None]:
    """The decision policy of a run, from ``R/operating_point.json`` (written by ``dermascan evaluate``).

    Returns:
        ``(policy, raw)``: the policy and the file's content (``None`` when absent). Without the file the
        policy is uncalibrated (temperature 1, no threshold) and an :class:`UncalibratedWarning` says so.
    """
    path = Path(run_dir) / OPERATING_POINT_FILE
    if not path.is_file():
        warnings.warn(
            f"{path} not found: the model is uncalibrated (temperature 1, the argmax decides melanoma, no "
            "risk bands). Run `dermascan evaluate` on the run first to lock a validated operating point.",
            UncalibratedWarning,
            stacklevel=2,
        )
        return DecisionPolicy(), None
    try:
        raw = json.loads(path.read_text())
        return DecisionPolicy.from_dict(raw), raw
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}: not a valid operating point ({e}); rerun `dermascan evaluate --recalibrate`") from e


def write_operating_point(run_dir: str | os.PathLike[str], point: dict[str, Any]) -> Path:
    """Lock an operating point into the run (atomically); ``point`` must parse as a :class:`DecisionPolicy`."""
    DecisionPolicy.from_dict(point)  # refuse to write what could not be read back
    return _io.write_json(Path(run_dir) / OPERATING_POINT_FILE, point)


def write_data_record(run_dir: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write the run's data record (``data.json``; :meth:`DermoscopyIndex.record` plus the split sizes)."""
    if not str(record.get("fingerprint", "")):
        raise ValueError("a data record needs its fingerprint")
    return _io.write_json(Path(run_dir) / DATA_FILE, record)


def read_data_record(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's ``data.json`` (``None`` for a run trained before data records, or a bare checkpoint)."""
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise RunError(f"{path}: not valid JSON ({e}); it is written by `dermascan train`") from e


@dataclass
class Run:
    """A training run folder, loaded: a checkpoint's model, its config, splits and operating point.

    Attributes:
        path: the run folder.
        checkpoint: the checkpoint file that was loaded.
        loaded: the :class:`~dermascan.models.LoadedModel` (``None`` when loaded with ``model=False``).
        config: the resolved training config (``None`` for a bare checkpoint without ``config.yaml``).
        splits: ``splits.csv`` (``None`` when absent).
    """

    path: Path
    checkpoint: Path
    loaded: Any
    config: TrainConfig | None
    splits: pd.DataFrame | None

    @property
    def name(self) -> str:
        return self.path.name

    def operating_point(self) -> dict[str, Any] | None:
        """The raw ``operating_point.json`` (``None`` while the run is uncalibrated), read fresh each time."""
        path = self.path / OPERATING_POINT_FILE
        return read_operating_point(self.path)[1] if path.is_file() else None

    def policy(self) -> DecisionPolicy:
        """The run's decision policy (uncalibrated, with a warning, before `dermascan evaluate`)."""
        return read_operating_point(self.path)[0]


def load_run(path: str | os.PathLike[str], checkpoint: str | None = None, *, model: bool = True) -> Run:
    """Load a run folder (or a ``.ckpt`` file) with its config and splits.

    Args:
        path: run folder or checkpoint file.
        checkpoint: file name inside the run (default ``best.ckpt``, else ``last.ckpt``).
        model: load the checkpoint's model (imports torch); ``False`` reads only the folder's files.
    """
    from dermascan.data.splits import read_splits

    if checkpoint is not None:
        run_dir, ckpt = Path(path), Path(path) / checkpoint
        if not ckpt.is_file():
            raise RunError(f"{ckpt} not found: is {run_dir} a run folder made by `dermascan train`?")
    else:
        run_dir, ckpt = resolve_checkpoint(path)
    loaded = None
    if model:
        from dermascan.models import load_checkpoint

        loaded = load_checkpoint(ckpt)
    splits = read_splits(run_dir / SPLITS_FILE) if (run_dir / SPLITS_FILE).is_file() else None
    return Run(run_dir, ckpt, loaded, read_config(run_dir), splits)
