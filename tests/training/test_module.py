"""The Lightning module's model-selection score and the validation figures it is made of."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dermascan.taxonomy import CLASSES, MELANOMA_INDEX
from dermascan.training.config import TrainConfig
from dermascan.training.module import LesionClassifier, selection_score


def test_selection_score_is_specificity_at_target_with_auroc_as_tie_break() -> None:
    assert selection_score(0.8, 0.9) == pytest.approx(0.8009, abs=1e-15)
    # A tie in specificity is broken by AUROC ...
    assert selection_score(0.8, 0.95) > selection_score(0.8, 0.90)
    # ... but AUROC never outweighs a real specificity gain: one more true negative in 999 beats AUROC 0 -> 1.
    assert selection_score(0.5 + 1 / 999, 0.0) > selection_score(0.5, 1.0)
    # Calling everything melanoma (specificity 0 at the target) loses to any model that specifies at all.
    assert selection_score(0.0, 1.0) < selection_score(0.01, 0.5)


def test_selection_score_counts_undefined_figures_as_zero_not_nan() -> None:
    """An epoch whose validation misses a class has NaN figures; they must not poison the max (NaN > x is False)."""
    assert selection_score(math.nan, 0.9) == pytest.approx(0.0009)
    assert selection_score(0.7, math.nan) == 0.7
    assert selection_score(math.nan, math.nan) == 0.0
    assert not math.isnan(selection_score(math.nan, math.nan))


def test_validation_epoch_logs_the_selection_of_its_own_figures() -> None:
    """Hand-made scores: 10 melanomas (9 at 0.95, one at 0.30) and 10 nevi (6 at 0.10, 4 at 0.97).

    90% sensitivity needs the threshold at 0.95: the 4 nevi at 0.97 are false positives, specificity 0.6.
    AUROC: 9 melanomas beat 6 nevi and the last one 6 too: 60 of 100 pairs, 0.6.
    """
    p_mel = np.array([0.95] * 9 + [0.30] + [0.10] * 6 + [0.97] * 4)
    labels = torch.tensor([MELANOMA_INDEX] * 10 + [CLASSES.index("NV")] * 10)
    logits = torch.full((20, len(CLASSES)), -40.0)  # (N, K): all mass on MEL and the true class
    logits[:, MELANOMA_INDEX] = torch.as_tensor(np.log(p_mel), dtype=torch.float32)
    logits[10:, CLASSES.index("NV")] = torch.as_tensor(np.log(1 - p_mel[10:]), dtype=torch.float32)
    logits[:10, CLASSES.index("NV")] = torch.as_tensor(np.log(1 - p_mel[:10]), dtype=torch.float32)

    module = LesionClassifier(nn.Identity(), nn.CrossEntropyLoss(), TrainConfig(data="x"), {})
    module._val_logits.append(logits)
    module._val_labels.append(labels)
    with pytest.warns(UserWarning, match="self.trainer"):  # logging without a trainer only warns
        module.on_validation_epoch_end()
    v = module.last_val
    assert v["melanoma_specificity_at_target"] == pytest.approx(0.6)
    assert v["melanoma_auroc"] == pytest.approx(0.6)
    assert v["val_selection"] == pytest.approx(0.6 + 1e-3 * 0.6)
    # At argmax: melanoma wins where p > 0.5: 9 melanomas and the 4 nevi at 0.97.
    assert v["melanoma_sensitivity"] == pytest.approx(0.9) and v["melanoma_specificity"] == pytest.approx(0.6)
