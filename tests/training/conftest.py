"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dermascan.training.config import TrainConfig, resolve_config


@pytest.fixture
def tiny_config(tiny_isic: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """``tiny_config(out="run", **keys)``: cpu-demo at 32 px, 2 epochs, fp32, on ``tiny_isic``, in ``tmp_path/out``."""

    def make(out: str = "run", **keys: Any) -> TrainConfig:
        tiny = {"epochs": 2, "image_size": 32, "batch_size": 16, "seed": 1, "precision": "32-true"}
        return resolve_config("cpu-demo", data=str(tiny_isic), out=str(tmp_path / out), **(tiny | keys))

    return make
