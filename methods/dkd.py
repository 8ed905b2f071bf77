"""DKD (Baek et al., NeurIPS 2022, "Decomposed Knowledge Distillation for Class-Incremental
Semantic Segmentation") as its release cvlab-yonsei/DKD computes it (trainer/trainer_voc.py and
trainer/trainer_ade.py `Trainer_base` / `Trainer_incremental._train_epoch`, models/loss.py,
models/model.py `DeepLabV3`, train_voc.py / train_ade.py, configs/config_{voc,ade}.json).

Sigmoid outputs throughout. Channel 0 is DKD's auxiliary "non-target" classifier: it sees the
decoder features DETACHED (models/model.py `forward_class_prediction`), so its term trains only
its own row; here the engine's model computes channel 0 like any other, no term uses that
output, and the `ac` term recomputes it from the detached decoder features and classifier row 0
(a 1x1 convolution commutes with the bilinear upsampling, so this is the same value).

Terms of an incremental step (each a per-channel mean over every pixel of the batch, ignored
pixels included, summed over channels, then weighted; trainer_voc.py
`Trainer_incremental._train_epoch`):
- mbce (1): BCE with logits of the new channels against one-hot targets of the new classes
  (models/loss.py `WBCELoss`; 255 and every other label are negatives), positive weight
  `pos_weight`;
- kd (5): BCE with logits of the current old-class channels 1..C_old-1 against the sigmoid of
  the old model's (models/loss.py `KDLoss`), on the upsampled logits;
- dkd_pos, dkd_neg (5 each): the same BCE on the decomposed low-resolution logits: decoder
  features times the positive (resp. negative) part of every class row but the auxiliary one,
  without bias (models/model.py `forward_class_prediction_positive` / `_negative`), current
  old-class rows against the old model's;
- ac (1): BCE of the auxiliary channel against 0 (models/loss.py `ACLoss`).

Step 0 (recipe `dkd`, not shared with the cross-entropy methods): mbce over channels
1..C_0-1 with the dataset's step-0 positive weight, plus ac (trainer_voc.py `Trainer_base`).
Inference (trainer_voc.py `_test`): sigmoid; the argmax over channels >= 1, background where no
such channel exceeds 0.5 (channel 0 is never predicted from its own output).

Classifier initialisation (train_voc.py `main_worker`, `model.init_novel_classifier` when
ac > 0): every new row copies the auxiliary row's weight and bias.
Freezing at incremental steps (`--freeze_bn` -> `freeze_all_bn`, models/model.py `freeze_bn`,
`freeze_dropout`): every BatchNorm and Dropout in eval mode, BatchNorm parameters left out of
the optimizer (`get_backbone_params` / `get_aspp_params`). Optimizer groups (train_voc.py
`main_worker`): ASPP + head and classifiers at 10x the backbone's lr (here: the recipe's lr,
backbone at 1/10); at incremental steps weight decay 0 except on the new classifier. Step 0's
backbone BatchNorm momentum 0.01 (`model._set_bn_momentum(model.backbone, momentum=0.01)`).

Because BatchNorm is frozen after step 0 and the backbone's statistics move at momentum 0.01, a
step 0 much shorter than its recipe leaves them unconverged: on the embedded ADE data
(ade-100-50) a 1-epoch step 0 makes step 1 diverge within a few epochs, a 10-epoch one does not
(shorten only the incremental epochs when checking DKD quickly).

Departures: the release's fp16 AMP with a GradScaler is the recipe's bf16 autocast here; ADE's
warm-up (configs/config_ade.json WarmupPolyLR, 20 % of iterations) is not in the engine's poly
schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import (
    SINGLE,
    GlobalBatch,
    LossInputs,
    Method,
    ModelOutput,
    ParameterGroup,
    Step0Recipe,
    StepContext,
)
from methods.registry import register
from methods.step0 import register_step0

# configs/config_voc.json "pos_weight": 1 (incremental); README.md VOC script --pos_weight 2 at
# step 0 (INIT_POSWEIGHT); configs/config_ade.json "pos_weight": 35 (every step)
STEP0_POS_WEIGHT = {"voc": 2.0, "ade": 35.0}
BACKBONE_BN_MOMENTUM = 0.01
# train_voc.py `main_worker`: ASPP and classifiers at 10x the configured lr, the backbone at 1x.
# The recipe's lr is the 10x one (bench/conf/trainer/dkd.yaml), so the backbone runs at 1/10:
# the same rates on real data, and on the embedded data the head gets the synth recipe's rate
# like every other method (at 10x the synth rate DKD's channel-summed terms diverge on ADE).
BACKBONE_LR_FACTOR = 0.1


def channel_bce(logits: Tensor, targets: Tensor, batch: GlobalBatch = SINGLE,
                pos_weight: float = 1.0) -> Tensor:
    """BCE with logits per element, mean over (N, H, W) per channel, summed over channels."""
    weight = torch.tensor(pos_weight, device=logits.device)
    per_element = F.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), pos_weight=weight, reduction="none")
    channels = per_element.shape[1]
    count = per_element.numel() // max(channels, 1)
    return batch.average(per_element.sum(), count)


def one_hot_of(labels: Tensor, first_channel: int, channels: int) -> Tensor:
    """(N, channels, H, W) targets: 1 where the label is first_channel + c (255 -> all 0)."""
    wanted = torch.arange(first_channel, first_channel + channels, device=labels.device)
    return (labels[:, None] == wanted[None, :, None, None]).float()


def decomposed_logits(decoder: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Decoder features times the positive and the negative part of the class rows, no bias:
    (N, F, h, w), (K, F) -> two (N, K, h, w)."""
    features = decoder.float()
    rows = weights.float().flatten(1)
    positive = torch.einsum("nfhw,kf->nkhw", features, rows.clamp_min(0))
    negative = torch.einsum("nfhw,kf->nkhw", features, rows.clamp_max(0))
    return positive, negative


def auxiliary_logit(decoder: Tensor, weight: Tensor, bias: Tensor, size: Any) -> Tensor:
    """Channel 0 from the DETACHED decoder features, upsampled to `size`."""
    lowres = F.conv2d(decoder.detach().float(), weight[:1].float(), bias[:1].float())
    return F.interpolate(lowres, size=tuple(size), mode="bilinear", align_corners=False)


def classifier_rows(parameters: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Every step's classifier weight and bias, concatenated in channel order."""
    steps = sorted({int(name.split(".")[1]) for name in parameters
                    if name.startswith("classifiers.")})
    weights = torch.cat([parameters[f"classifiers.{i}.weight"] for i in steps])
    biases = torch.cat([parameters[f"classifiers.{i}.bias"] for i in steps])
    return weights, biases


def sigmoid_prediction(logits: Tensor) -> Tensor:
    """trainer_voc.py `_test`: argmax over channels >= 1 of the sigmoid, 0 where none > 0.5."""
    probabilities = torch.sigmoid(logits[:, 1:].float())
    predicted = probabilities.argmax(dim=1) + 1
    return torch.where((probabilities > 0.5).any(dim=1), predicted,
                       torch.zeros_like(predicted))


def mbce_and_ac(output: ModelOutput, labels: Tensor, new_channels: range,
                parameters: Mapping[str, Tensor], batch: GlobalBatch,
                pos_weight: float) -> dict[str, Tensor]:
    logits = output.logits
    new = logits[:, new_channels.start:new_channels.stop]
    weights, biases = classifier_rows(parameters)
    assert output.decoder is not None, "dkd needs the decoder features"
    auxiliary = auxiliary_logit(output.decoder, weights, biases, logits.shape[-2:])
    return {
        "mbce": channel_bce(new, one_hot_of(labels, new_channels.start, len(new_channels)),
                            batch, pos_weight),
        "ac": channel_bce(auxiliary, torch.zeros_like(auxiliary), batch),
    }


def is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def dkd_groups(model: nn.Module, incremental: bool) -> list[ParameterGroup]:
    """train_voc.py `main_worker`'s optimizer groups (see the module docstring)."""
    def parameters(modules: list[nn.Module]) -> tuple[nn.Parameter, ...]:
        found = []
        for module in modules:
            for sub in module.modules():
                if incremental and is_batchnorm(sub):
                    continue
                found += [p for p in sub.parameters(recurse=False) if p.requires_grad]
        return tuple(found)

    decay = 0.0 if incremental else None
    classifiers = list(model.classifiers)
    groups = [ParameterGroup(parameters([model.backbone]), BACKBONE_LR_FACTOR, decay),
              ParameterGroup(parameters([model.aspp, model.head]), 1.0, decay)]
    if incremental:
        groups += [ParameterGroup(parameters(classifiers[:-1]), 1.0, 0.0),
                   ParameterGroup(parameters(classifiers[-1:]), 1.0, None)]
    else:
        groups.append(ParameterGroup(parameters(classifiers), 1.0, None))
    return groups


@register_step0
class DKDStep0(Step0Recipe):
    name = "dkd"
    description = ("DKD's step 0: weighted one-hot BCE over channels >= 1 + auxiliary "
                   "classifier loss, sigmoid inference (not shared with CE methods)")

    def on_step_start(self, context: StepContext) -> None:
        for module in context.model.backbone.modules():
            if is_batchnorm(module):
                module.momentum = BACKBONE_BN_MOMENTUM

    def step0_loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        channels = range(1, inputs.output.logits.shape[1])
        return mbce_and_ac(inputs.output, inputs.labels, channels, inputs.parameters,
                           inputs.batch, STEP0_POS_WEIGHT.get(self.protocol.dataset, 1.0))

    def parameter_groups(self, model: nn.Module) -> list[ParameterGroup]:
        return dkd_groups(model, incremental=False)

    def predict(self, logits: Tensor) -> Tensor:
        return sigmoid_prediction(logits)


@register
class DKD(Method):
    name = "dkd"
    description = ("DKD: sigmoid BCE on new classes + KD + decomposed (positive/negative) KD "
                   "+ auxiliary classifier; frozen BatchNorm; own step 0")
    defaults = {"mbce_weight": 1.0, "kd_weight": 5.0, "dkd_pos_weight": 5.0,
                "dkd_neg_weight": 5.0, "ac_weight": 1.0, "pos_weight": 1.0}
    sources = {
        "mbce_weight": "cvlab-yonsei/DKD configs/config_voc.json hyperparameter.mbce = 1",
        "kd_weight": "configs/config_voc.json hyperparameter.kd = 5",
        "dkd_pos_weight": "configs/config_voc.json hyperparameter.dkd_pos = 5",
        "dkd_neg_weight": "configs/config_voc.json hyperparameter.dkd_neg = 5",
        "ac_weight": "configs/config_voc.json hyperparameter.ac = 1",
        "pos_weight": "configs/config_voc.json hyperparameter.pos_weight = 1 (incremental "
                      "steps); configs/config_ade.json: 35",
    }
    per_protocol = {"ade-*": {"pos_weight": 35.0}}
    step0 = "dkd"
    recipe = "dkd"
    uses_old_model = True

    def __init__(self, protocol: Any, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(protocol, params)
        self.old_rows: Tensor | None = None

    def on_step_start(self, context: StepContext) -> None:
        if context.step == 0 or context.old_model is None:
            return
        old_weights, _ = classifier_rows(dict(context.old_model.named_parameters()))
        self.old_rows = old_weights[1:].detach()
        if self.params["ac_weight"] > 0:
            model = context.model
            first, newest = model.classifiers[0], model.classifiers[-1]
            with torch.no_grad():
                newest.weight.copy_(first.weight[:1].expand_as(newest.weight))
                newest.bias.copy_(first.bias[:1].expand_as(newest.bias))

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        old = inputs.old_output
        if old is None or self.old_rows is None:
            raise RuntimeError("dkd needs the old model at an incremental step")
        params = self.params
        old_channels = old.logits.shape[1]
        new_channels = range(old_channels, inputs.output.logits.shape[1])
        terms = mbce_and_ac(inputs.output, inputs.labels, new_channels, inputs.parameters,
                            inputs.batch, params["pos_weight"])
        old_targets = torch.sigmoid(old.logits[:, 1:].float())
        kd = channel_bce(inputs.logits[:, 1:old_channels], old_targets, inputs.batch)
        weights, _ = classifier_rows(inputs.parameters)
        assert inputs.output.decoder is not None and old.decoder is not None
        positive, negative = decomposed_logits(inputs.output.decoder,
                                               weights[1:old_channels])
        old_positive, old_negative = decomposed_logits(old.decoder, self.old_rows)
        return {
            "mbce": params["mbce_weight"] * terms["mbce"],
            "kd": params["kd_weight"] * kd,
            "dkd_pos": params["dkd_pos_weight"]
            * channel_bce(positive, torch.sigmoid(old_positive), inputs.batch),
            "dkd_neg": params["dkd_neg_weight"]
            * channel_bce(negative, torch.sigmoid(old_negative), inputs.batch),
            "ac": params["ac_weight"] * terms["ac"],
        }

    def parameter_groups(self, model: nn.Module) -> list[ParameterGroup]:
        return dkd_groups(model, incremental=True)

    def train_mode(self, model: nn.Module) -> None:
        for module in model.modules():
            if is_batchnorm(module) or isinstance(module, nn.Dropout):
                module.eval()

    def predict(self, logits: Tensor) -> Tensor:
        return sigmoid_prediction(logits)
