"""The engine's generic learner hooks: optimizer parameter groups (learning-rate factor under
the poly schedule, weight decay), `train_mode` after `model.train()`, and `predict` in the
evaluation. Defaults keep the behaviour of a learner that overrides none of them."""

from __future__ import annotations

import torch
from torch import nn

from bench.engine.evaluation import evaluate
from bench.engine.hooks import PolyLR, poly_lr
from bench.engine.model import DeepLabV3
from bench.engine.trainer import StepTrainer
from bench.spec import StepRecipe
from methods.base import Learner, ModelOutput, ParameterGroup

RECIPE = StepRecipe(epochs=2, lr=0.1, batch_size=2, crop=16, momentum=0.9, nesterov=True,
                    weight_decay=1e-4, poly_power=0.9)


def tiny_model() -> DeepLabV3:
    torch.manual_seed(0)
    return DeepLabV3("resnet18", [3], base_channels=4, aspp_channels=8)


class Hooked(Learner):
    def parameter_groups(self, model):
        classifier = tuple(model.classifiers.parameters())
        rest = tuple(p for p in model.parameters() if all(p is not c for c in classifier))
        return [ParameterGroup(rest), ParameterGroup(classifier, 10.0, 0.0)]

    def train_mode(self, model):
        model.backbone.eval()



def batches(epoch: int):
    generator = torch.Generator().manual_seed(epoch)
    images = torch.randint(0, 255, (2, 3, 16, 16), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 3, (2, 16, 16), generator=generator)
    return [(images, labels), (images.flip(-1), labels.flip(-1))]


def test_groups_lr_factor_weight_decay_and_train_mode():
    model, learner = tiny_model(), Hooked()
    seen = []

    class Spy(PolyLR):
        def before_iteration(self, trainer):
            super().before_iteration(trainer)
            seen.append(([g["lr"] for g in trainer.optimizer.param_groups],
                         trainer.model.backbone.training, trainer.model.classifiers.training))

    trainer = StepTrainer(model, None, learner, RECIPE, batches, 2, step=0, seed=0,
                          device=torch.device("cpu"), hooks=[Spy()])
    groups = trainer.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    trainer.train()
    for iteration, (lrs, backbone_training, classifier_training) in enumerate(seen):
        base = poly_lr(0.1, iteration, 4, 0.9)
        assert lrs == [base, 10 * base]
        assert not backbone_training and classifier_training


def test_default_groups_are_every_trainable_parameter_at_the_recipe_values():
    model = tiny_model()
    model.backbone.conv1.weight.requires_grad_(False)
    (group,) = Learner().parameter_groups(model)
    assert len(group.parameters) == len(list(model.parameters())) - 1
    assert (group.lr_factor, group.weight_decay) == (1.0, None)


class Constant(nn.Module):
    def forward(self, images):
        logits = torch.zeros(images.shape[0], 3, *images.shape[-2:])
        logits[:, 2] = 1.0
        return ModelOutput(logits)


def test_evaluation_uses_the_learner_prediction():
    images = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    labels = torch.tensor([[[0, 1], [2, 255]]])
    default = evaluate(Constant(), [(images, labels)], 3, torch.device("cpu"))
    assert default.matrix[:, 2].sum().item() == 3  # argmax: channel 2 everywhere
    zeros = evaluate(Constant(), [(images, labels)], 3, torch.device("cpu"),
                     predict=lambda logits: torch.zeros(logits.shape[0], *logits.shape[2:],
                                                        dtype=torch.long))
    assert zeros.matrix[:, 0].sum().item() == 3
