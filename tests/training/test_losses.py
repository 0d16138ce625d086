"""The melanoma-focused loss, class weights and weight-decay parameter groups, against hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dermascan.errors import ConfigError
from dermascan.training.config import TrainConfig
from dermascan.training.losses import (
    MelanomaFocalLoss,
    create_loss,
    melanoma_focal_loss,
)
from dermascan.training.optim import param_groups


def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_hand_computed_two_samples_three_classes() -> None:
    logits = [[1.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
    target = [0, 1]  # a melanoma, then a nevus
    w = [2.0, 1.0, 0.5]
    gamma, lam = 2.0, 0.3

    p0, p1 = _softmax(logits[0]), _softmax(logits[1])
    # Weighted CE, PyTorch's weighted mean: sum_i w_{y_i} * -log p_i[y_i] / sum_i w_{y_i}.
    ce = (w[0] * -math.log(p0[0]) + w[1] * -math.log(p1[1])) / (w[0] + w[1])
    # Focal on melanoma-vs-rest: melanoma sample -(1-p)^g log p; other sample -p^g log(1-p).
    fl_mel = -((1 - p0[0]) ** gamma) * math.log(p0[0])
    fl_other = -(p1[0] ** gamma) * math.log(1 - p1[0])
    expected = ce + lam * (fl_mel + fl_other) / 2

    loss_fn = create_loss("weighted_ce_focal", torch.tensor(w), focal_gamma=gamma, focal_weight=lam)
    got = loss_fn(torch.tensor(logits), torch.tensor(target))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    ce_t, fl_t = loss_fn.terms(torch.tensor(logits), torch.tensor(target))
    assert ce_t.item() == pytest.approx(ce, rel=1e-6)
    assert fl_t.item() == pytest.approx((fl_mel + fl_other) / 2, rel=1e-6)


def test_melanoma_index_is_respected() -> None:
    logits = torch.tensor([[0.2, 2.0, -1.0]])
    # Melanoma at column 1: the sample (target 1) is a melanoma with p = softmax[1].
    p = _softmax(logits[0].tolist())[1]
    got = melanoma_focal_loss(logits, torch.tensor([1]), gamma=2.0, melanoma_index=1)
    assert got.item() == pytest.approx(-((1 - p) ** 2) * math.log(p), rel=1e-6)


def test_matches_a_naive_implementation_values_and_gradients() -> None:
    torch.manual_seed(0)
    logits = torch.randn(16, 7, requires_grad=True)
    target = torch.randint(0, 7, (16,))
    target[:4] = 0
    w = torch.rand(7) + 0.5
    loss = MelanomaFocalLoss(w, focal_gamma=2.0, focal_weight=0.3)(logits, target)
    (grad,) = torch.autograd.grad(loss, logits)

    logits2 = logits.detach().clone().requires_grad_(True)
    p = logits2.softmax(1)[:, 0]
    mel = target == 0
    fl = torch.where(mel, -((1 - p) ** 2) * p.log(), -(p**2) * (1 - p).log()).mean()
    naive = F.cross_entropy(logits2, target, weight=w) + 0.3 * fl
    (grad2,) = torch.autograd.grad(naive, logits2)
    torch.testing.assert_close(loss, naive)
    torch.testing.assert_close(grad, grad2)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_extreme_logits_stay_finite(gamma: float) -> None:
    logits = torch.tensor(
        [
            [1e4, -1e4, 0.0, 0.0, 0.0, 0.0, 0.0],  # confident melanoma, right
            [-1e4, 1e4, 0.0, 0.0, 0.0, 0.0, 0.0],  # confident nevus, but it is a melanoma
            [1e4, -1e4, 0.0, 0.0, 0.0, 0.0, 0.0],  # confident melanoma, but it is a nevus
            [-1e4, 1e4, -1e4, -1e4, -1e4, -1e4, -1e4],  # confident nevus, right
        ],
        requires_grad=True,
    )
    target = torch.tensor([0, 0, 1, 1])
    loss_fn = create_loss("weighted_ce_focal", torch.ones(7), focal_gamma=gamma)
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1e3  # the two confident mistakes cost a lot
    assert torch.isfinite(logits.grad).all()


def test_focal_term_down_weights_easy_examples() -> None:
    def ratio(p_mel: float) -> float:
        # Logits giving P(melanoma) = p_mel against one other class.
        logits = torch.tensor([[math.log(p_mel), math.log(1 - p_mel)]])
        target = torch.tensor([0])
        focal = melanoma_focal_loss(logits, target, gamma=2.0)
        bce = melanoma_focal_loss(logits, target, gamma=0.0)
        assert bce.item() == pytest.approx(-math.log(p_mel), rel=1e-5)  # gamma 0 is plain BCE
        return focal.item() / bce.item()

    easy, hard = ratio(0.95), ratio(0.1)
    assert easy == pytest.approx(0.05**2, rel=1e-4)
    assert hard == pytest.approx(0.9**2, rel=1e-4)
    assert easy < hard


def test_ce_baseline_is_plain_cross_entropy() -> None:
    loss_fn = create_loss("ce")
    logits, target = torch.randn(5, 7), torch.randint(0, 7, (5,))
    torch.testing.assert_close(loss_fn(logits, target), F.cross_entropy(logits, target))
    with pytest.raises(ValueError, match="unweighted baseline"):
        create_loss("ce", class_weights=torch.ones(7))
    with pytest.raises(ValueError, match="unknown loss kind"):
        create_loss("focal")  # type: ignore[arg-type]


def test_zero_focal_weight_is_weighted_ce() -> None:
    w = torch.tensor([3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    logits, target = torch.randn(6, 7), torch.randint(0, 7, (6,))
    loss = create_loss("weighted_ce_focal", w, focal_weight=0.0)(logits, target)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target, weight=w))


def test_label_smoothing_softens_the_cross_entropy_but_never_the_melanoma_focal_term() -> None:
    w = torch.tensor([3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    logits, target = torch.randn(8, 7) * 4, torch.randint(0, 7, (8,))
    smoothed = MelanomaFocalLoss(w, focal_weight=0.3, label_smoothing=0.1)
    ce, focal = smoothed.terms(logits, target)
    # by hand: (1 - eps) of the target's -log p plus eps spread evenly over the K classes, weighted mean
    log_p = F.log_softmax(logits, dim=1)  # (B, K)
    per = -(0.9 * log_p.gather(1, target[:, None])[:, 0] + 0.1 * (log_p * w).sum(1) / w[target] / 7)
    torch.testing.assert_close(ce, (w[target] * per).sum() / w[target].sum())
    torch.testing.assert_close(focal, melanoma_focal_loss(logits, target))  # hard targets
    plain = create_loss("ce", label_smoothing=0.2)(logits, target)
    torch.testing.assert_close(plain, F.cross_entropy(logits, target, label_smoothing=0.2))
    confident = torch.full((4, 7), -10.0).scatter(1, torch.arange(4)[:, None], 10.0)  # right, and sure of it
    assert create_loss("ce", label_smoothing=0.1)(confident, torch.arange(4)) > create_loss("ce")(
        confident, torch.arange(4)
    )
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        MelanomaFocalLoss(label_smoothing=1.0)


def test_label_smoothing_is_a_training_option_with_a_named_range() -> None:
    assert TrainConfig(label_smoothing=0.1).to_dict()["label_smoothing"] == 0.1  # recorded in the run's config
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\), got 1.5"):
        TrainConfig(label_smoothing=1.5)


def test_class_weights_follow_the_module_but_stay_out_of_checkpoints() -> None:
    w = torch.tensor([2.0, 1.0, 0.5, 1.0, 1.0, 4.0, 3.0])
    loss_fn = MelanomaFocalLoss(w, focal_weight=0.3)
    assert "class_weights" not in loss_fn.state_dict()  # derived from the data, not learned: not saved
    logits, target = torch.randn(8, 7), torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    expected = F.cross_entropy(logits, target, weight=w) + 0.3 * melanoma_focal_loss(logits, target)
    moved = loss_fn.to(torch.float64)  # a cast module keeps its weights, cast, with the same values
    assert moved.class_weights.dtype == torch.float64
    torch.testing.assert_close(moved.class_weights, w.double())
    # ... and still computes the float32 loss (it raised "expected scalar type Float but found Double").
    for x in (logits, logits.double()):
        torch.testing.assert_close(moved(x, target), expected)
    with pytest.raises(ValueError, match="class_weights"):
        MelanomaFocalLoss(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="focal_gamma"):
        MelanomaFocalLoss(focal_gamma=-1.0)


# ------------------------------------------------------------------------------------------ weight decay


def test_param_groups_exclude_biases_norms_and_embeddings() -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)
    vit.conv_proj.requires_grad_(False)  # frozen: left out of the optimiser entirely
    decay, no_decay = param_groups(vit, weight_decay=0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in vit.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert "heads.head.weight" in decayed and "encoder.layers.encoder_layer_0.mlp.0.weight" in decayed
    assert {"class_token", "encoder.pos_embedding", "heads.head.bias", "encoder.ln.weight"} <= not_decayed
    assert not any(n.startswith("conv_proj") for n in decayed | not_decayed)
    trainable = {n for n, p in vit.named_parameters() if p.requires_grad}
    assert decayed | not_decayed == trainable and not decayed & not_decayed
    torch.optim.AdamW(param_groups(vit), lr=1e-3)  # accepted as is


def test_param_groups_drops_empty_groups() -> None:
    groups = param_groups(nn.Linear(3, 2, bias=False))
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.01
