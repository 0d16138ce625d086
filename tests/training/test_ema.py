"""Weight averaging (ema_decay): the recurrence, and that the checkpoints ship the average validation scored."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch import nn

from dermascan.errors import ConfigError
from dermascan.models.checkpoint import load_checkpoint
from dermascan.training.config import TrainConfig
from dermascan.training.ema import ema_decay_at, update_ema
from dermascan.training.train import train


def test_update_is_the_moving_average_of_weights_and_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    average = copy.deepcopy(model)
    model.train()(torch.randn(8, 3))  # moves the running statistics and the batch count
    with torch.no_grad():
        model[0].weight.add_(1.0)
    before = {k: v.clone() for k, v in average.state_dict().items()}

    update_ema(average, model, decay=0.9)

    for key, new in model.state_dict().items():
        got = average.state_dict()[key]
        if new.is_floating_point():
            torch.testing.assert_close(got, 0.9 * before[key] + 0.1 * new)
        else:  # num_batches_tracked
            assert torch.equal(got, new)
    assert not torch.equal(average[0].weight, model[0].weight)


def test_decay_ramps_up_from_the_first_step() -> None:
    assert ema_decay_at(0.997, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.997, 10) == pytest.approx(11 / 20)
    assert ema_decay_at(0.997, 100_000) == 0.997


def test_decay_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        TrainConfig(ema_decay=1.0)


class _Capture(L.Callback):
    """The raw and averaged weights as each validation saw them."""

    def __init__(self) -> None:
        self.raw: list[dict[str, torch.Tensor]] = []
        self.averaged: list[dict[str, torch.Tensor]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.raw.append({k: v.clone() for k, v in pl_module.model.state_dict().items()})
        self.averaged.append({k: v.clone() for k, v in pl_module.ema.state_dict().items()})


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_ship_the_average_that_validation_scored(tiny_config) -> None:
    cfg = tiny_config(ema_decay=0.9)
    capture = _Capture()
    result = train(cfg, progress=False, callbacks=[capture])
    assert len(capture.averaged) == 2 and not _same(capture.raw[-1], capture.averaged[-1])

    shipped = load_checkpoint(result.last_checkpoint).model.state_dict()
    assert _same(shipped, capture.averaged[-1])  # what evaluate, export and the Predictor load
    best = load_checkpoint(result.best_checkpoint).model.state_dict()
    assert any(_same(best, averaged) for averaged in capture.averaged)
    assert not any(_same(best, raw) for raw in capture.raw)

    # the raw weights ride along under "ema.*", for --resume only
    state = torch.load(result.last_checkpoint, weights_only=True)["state_dict"]
    raw = {k.removeprefix("ema."): v for k, v in state.items() if k.startswith("ema.")}
    assert _same(raw, capture.raw[-1])


def test_resuming_with_another_ema_setting_is_refused_by_name(tiny_config) -> None:
    train(tiny_config(epochs=1), progress=False)
    with pytest.raises(ConfigError, match="trained without weight averaging"):
        train(tiny_config(epochs=2, ema_decay=0.9), resume=True, progress=False)
