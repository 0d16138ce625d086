"""Load a trained model back from a DermaScan checkpoint (``best.ckpt`` / ``last.ckpt`` of a run).

Checkpoints hold plain data only, so they load with ``torch.load(weights_only=True)``; nothing in them
is unpickled as code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermascan.config import Preprocessing
from dermascan.models._factory import create_model
from dermascan.models.weights import WeightsFileError
from dermascan.taxonomy import CLASSES


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode), with what it needs to prepare its input.

    Attributes:
        model: the network, in eval mode, on the CPU.
        arch: registry name, e.g. ``resnet50``.
        preprocessing: the eval preprocessing it was trained with.
        classes: class codes in output order (always the ISIC 2018 order).
        hparams: everything the run stored (training config, class weights, data fingerprint ...).
    """

    model: nn.Module
    arch: str
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    hparams: dict[str, Any]


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedModel:
    """Rebuild the model saved in a training checkpoint.

    Raises:
        FileNotFoundError: no such file.
        WeightsFileError: not a DermaScan checkpoint, or it does not load safely.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (a run folder holds best.ckpt and last.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code; never retry without it
        raise WeightsFileError(f"{path}: not a checkpoint that loads safely with weights_only=True ({e})") from e
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or "arch" not in hparams or "state_dict" not in ckpt:
        raise WeightsFileError(f"{path}: not a DermaScan training checkpoint (no arch/state_dict inside)")
    classes = tuple(hparams.get("classes", CLASSES))
    if classes != CLASSES:
        raise WeightsFileError(f"{path}: class order {classes} differs from the ISIC 2018 order {CLASSES}")
    pre = Preprocessing.from_dict(hparams["preprocessing"])
    model = create_model(hparams["arch"], num_classes=len(classes), weights="none", image_size=pre.input_size)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.preprocessing = pre
    model.eval()
    return LoadedModel(model, hparams["arch"], pre, classes, dict(hparams))
