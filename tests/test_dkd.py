"""DKD's terms on literal tensors (hand-computed values in the comments), its sigmoid
inference rule, its step-0 recipe, classifier initialisation, optimizer groups and freezing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.engine.model import DeepLabV3
from methods import LossInputs, ModelOutput, StepContext, get_method
from methods.dkd import (
    channel_bce,
    decomposed_logits,
    one_hot_of,
    sigmoid_prediction,
)
from methods.step0 import recipe_of, step0_learner
from protocols import get_protocol

VOC_15_5 = get_protocol("voc-15-5")
LN2 = math.log(2)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_channel_bce_by_hand():
    # channel 0: pixel [0 -> target 1] 2 * ln 2 (pos_weight 2), [ln 3 -> 0] ln(1 + 3) = 2 ln 2:
    # mean 2 ln 2; channel 1: two pixels [0 -> 0] ln 2: mean ln 2; summed: 3 ln 2
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]]).view(1, 2, 1, 2)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 2, 1, 2)
    assert channel_bce(logits, targets, pos_weight=2.0).item() == pytest.approx(3 * LN2)


def test_one_hot_targets_leave_255_negative():
    """models/loss.py `WBCELoss`: 255 is not ignored, it is a negative of every channel."""
    targets = one_hot_of(torch.tensor([[[0, 16, 17, 255]]]), 16, 2)
    assert targets[0, :, 0].tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]


def test_decomposed_logits_by_hand():
    decoder = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    rows = torch.tensor([[1.0, -1.0], [-2.0, 3.0]])
    positive, negative = decomposed_logits(decoder, rows)
    assert positive.flatten().tolist() == [1.0, 6.0]  # [1*1 + 0, 0 + 3*2]
    assert negative.flatten().tolist() == [-2.0, -2.0]  # [-1*2, -2*1]


def test_sigmoid_inference_rule():
    logits = torch.tensor([[5.0, -1.0, 2.0], [5.0, -1.0, -2.0], [-5.0, 1.0, 0.5]]).T
    # pixel 0: channel 2 (0.88); pixel 1: no channel >= 1 above 0.5 -> 0 (channel 0's 5 is
    # never read); pixel 2: channel 1 (0.73 > 0.62)
    assert sigmoid_prediction(logits.reshape(1, 3, 1, 3)).tolist() == [[[2, 0, 1]]]


def literal_inputs() -> tuple[LossInputs, torch.Tensor]:
    """One pixel; 2 old channels (aux/background + class 1) and 1 new (class 2).
    Current: decoder [1, 2]; rows: aux [0, 0] bias 0, class 1 [1, -1], class 2 [0.5, 0.5];
    upsampled logits [9, 0, 0]; label 2. Old: decoder [1, 0], logits [0, ln 3], class-1 row
    [2, -1]."""
    decoder = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).requires_grad_()
    parameters = {
        "classifiers.0.weight": torch.tensor([[0.0, 0.0], [1.0, -1.0]]).view(2, 2, 1, 1)
        .requires_grad_(),
        "classifiers.0.bias": torch.zeros(2, requires_grad=True),
        "classifiers.1.weight": torch.tensor([[0.5, 0.5]]).view(1, 2, 1, 1),
        "classifiers.1.bias": torch.zeros(1),
    }
    output = ModelOutput(torch.tensor([9.0, 0.0, 0.0]).view(1, 3, 1, 1), decoder=decoder)
    old = ModelOutput(torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1),
                      decoder=torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    return LossInputs(1, output, torch.tensor([[[2]]]), old, parameters), decoder


def test_dkd_terms_on_literal_tensors():
    inputs, decoder = literal_inputs()
    dkd = get_method("dkd")(VOC_15_5)
    dkd.old_rows = torch.tensor([[2.0, -1.0]]).view(1, 2, 1, 1)
    terms = dkd.loss(inputs)
    expected = {
        "mbce": LN2,  # new channel logit 0, target 1, pos_weight 1
        "kd": 5 * LN2,  # channel 1 logit 0 vs sigmoid(ln 3) = 3/4: softplus(0) - 3/4 * 0
        # current positive [1, 2].[1, 0] = 1 vs old sigmoid([1, 0].[2, 0] = 2):
        # softplus(1) - sigmoid(2) * 1
        "dkd_pos": 5 * (softplus(1) - 1 / (1 + math.exp(-2))),
        # current negative [1, 2].[0, -1] = -2 vs old sigmoid(0) = 1/2: softplus(-2) + 1
        "dkd_neg": 5 * (softplus(-2) + 1),
        "ac": LN2,  # auxiliary logit [1, 2].[0, 0] + 0 = 0 against 0
    }
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(expected)
    # the auxiliary term sees detached features: it trains classifier row 0 alone
    terms["ac"].backward()
    assert decoder.grad is None
    row_grad = inputs.parameters["classifiers.0.weight"].grad
    assert row_grad[0].abs().sum() > 0 and row_grad[1].abs().sum() == 0


def test_dkd_step0_is_its_own_recipe_with_weighted_bce():
    assert recipe_of(get_method("dkd")).name == "dkd" != recipe_of(get_method("ft")).name
    inputs, _ = literal_inputs()
    step0 = step0_learner(get_method("dkd")(VOC_15_5))
    labels = torch.tensor([[[1]]])
    logits = torch.zeros(1, 3, 1, 1)
    step0_inputs = LossInputs(0, ModelOutput(logits, decoder=inputs.output.decoder), labels,
                              parameters=inputs.parameters)
    terms = step0.loss(step0_inputs)
    # channels 1, 2 at logit 0: class 1 positive with VOC's step-0 pos_weight 2 -> 2 ln 2,
    # class 2 negative -> ln 2; auxiliary ln 2
    assert {k: v.item() for k, v in terms.items()} == pytest.approx({"mbce": 3 * LN2,
                                                                       "ac": LN2})
    assert step0.predict(torch.tensor([0.0, 1.0, -1.0]).view(1, 3, 1, 1)).item() == 1


def tiny_model(classes=(16,)) -> DeepLabV3:
    torch.manual_seed(0)
    return DeepLabV3("resnet18", list(classes), base_channels=4, aspp_channels=8)


def test_init_groups_and_frozen_batchnorm_at_an_incremental_step():
    model = tiny_model((16, 5))
    old = tiny_model((16,)).eval()
    dkd = get_method("dkd")(VOC_15_5)
    dkd.on_step_start(StepContext(VOC_15_5, 1, model, old, torch.device("cpu"), lambda: ()))
    aux = model.classifiers[0]
    assert torch.equal(model.classifiers[1].weight, aux.weight[:1].expand(5, -1, -1, -1))
    assert torch.equal(model.classifiers[1].bias, aux.bias[:1].expand(5))
    assert torch.equal(dkd.old_rows, old.classifiers[0].weight[1:])
    groups = dkd.parameter_groups(model)
    # backbone at 1/10 of the recipe's (head) lr, weight decay only on the new classifier
    assert [(g.lr_factor, g.weight_decay) for g in groups] == [
        (0.1, 0.0), (1.0, 0.0), (1.0, 0.0), (1.0, None)]
    grouped = {id(p) for g in groups for p in g.parameters}
    batchnorm = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                 for p in m.parameters()}
    assert not grouped & batchnorm  # frozen BatchNorm is not optimised
    assert grouped | batchnorm == {id(p) for p in model.parameters()}
    model.train()
    dkd.train_mode(model)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.classifiers.training


def test_step0_groups_and_backbone_batchnorm_momentum():
    model = tiny_model()
    step0 = step0_learner(get_method("dkd")(VOC_15_5))
    step0.on_step_start(StepContext(VOC_15_5, 0, model, None, torch.device("cpu"), lambda: ()))
    assert {m.momentum for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)} \
        == {0.01}
    assert model.head[1].momentum == 0.1
    groups = step0.parameter_groups(model)
    assert [(g.lr_factor, g.weight_decay) for g in groups] == [
        (0.1, None), (1.0, None), (1.0, None)]
    assert sum(len(g.parameters) for g in groups) == len(list(model.parameters()))


def test_ade_positive_weight():
    assert get_method("dkd").resolve_params("ade-100-50", {})["pos_weight"] == 35.0
    assert get_method("dkd").resolve_params("voc-15-1", {})["pos_weight"] == 1.0
