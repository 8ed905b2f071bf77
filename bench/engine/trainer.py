"""The training loop of one step (detectron2's `SimpleTrainer` split): forward the current and,
when the learner needs it, the previous model, the learner's loss, backward, SGD. Everything
else (learning-rate schedule, loss history, non-finite checks, progress, buffer averaging,
epoch checkpoints) is a hook with its own state (bench.engine.hooks).

Exact resume: every epoch starts by seeding torch from (seed, step, epoch), so an epoch is a pure
function of the state at its start; the epoch-checkpoint hook saves that state (model,
optimizer, learner state, every stateful hook) after each epoch, and a resumed step reaches
bit-identical weights on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bench.data.transforms import normalize
from bench.engine import distributed
from bench.engine.compute import (
    ComputeSettings,
    autocast,
    compiled,
    cudnn_benchmark,
    prepare_images,
    prepare_model,
)
from bench.engine.hooks import HookBase, LossHistory
from bench.engine.seeds import derived_seed
from bench.spec import StepRecipe
from methods.base import (
    GlobalBatch,
    IterationState,
    Learner,
    LossInputs,
    ParameterGroup,
    parameter_view,
)

Batches = Callable[[int], Iterable[tuple[Tensor, Tensor]]]


class StepTrainer:
    """Train `model` for one step with `learner`; `batches(epoch)` yields this rank's slices
    (uint8 images and labels on the CPU); the loop moves them to the device and normalises."""

    def __init__(self, model: nn.Module, old_model: nn.Module | None, learner: Learner,
                 recipe: StepRecipe, batches: Batches, iterations_per_epoch: int, step: int,
                 seed: int, device: torch.device, hooks: Sequence[HookBase] = (),
                 compute: ComputeSettings | None = None) -> None:
        self.compute = compute or ComputeSettings()
        prepare_model(model, self.compute)
        prepare_model(old_model, self.compute)
        self.model, self.old_model, self.learner = model, old_model, learner
        self.recipe, self.batches, self.step, self.seed = recipe, batches, step, seed
        self.device = device
        self.iterations_per_epoch = iterations_per_epoch
        self.total_iterations = recipe.epochs * iterations_per_epoch
        self.optimizer = torch.optim.SGD(
            optimizer_groups(learner.parameter_groups(model), recipe), lr=recipe.lr,
            momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
        self.start_epoch = 0
        self.epoch = 0
        self.iteration = 0  # over the whole step
        self.terms: dict[str, Tensor] = {}
        self.run_old = learner.uses_old_model and old_model is not None
        # statistics of the global batch when data-parallel (identity on one process)
        self.global_batch = GlobalBatch(sum=distributed.sum_with_grad,
                                        max=distributed.max_with_grad)
        self.parameters = parameter_view(model)
        # DDP averages gradients across ranks
        self.forward = compiled(distributed.wrap(model, device), self.compute)
        self.old_forward = (compiled(old_model, self.compute) if self.run_old else None)
        # bf16: both models' forward passes (the old one under no_grad) and the loss
        self.autocast = autocast(device, recipe.bf16)
        self.loss_history = LossHistory()
        self.hooks: list[HookBase] = [self.loss_history, *hooks]

    def train(self) -> list[dict[str, float]]:
        """Run (or resume) every epoch; returns the mean loss terms of each epoch."""
        with cudnn_benchmark(self.compute.cudnn_benchmark):
            return self._train()

    def _train(self) -> list[dict[str, float]]:
        self._call("before_train")
        for epoch in range(self.start_epoch, self.recipe.epochs):
            self.epoch = epoch
            torch.manual_seed(derived_seed(self.seed, self.step, epoch))
            self.model.train()
            self.learner.train_mode(self.model)
            self._call("before_epoch")
            for images, labels in self.batches(epoch):
                self._call("before_iteration")
                self.run_iteration(images, labels)
                self._call("after_iteration")
                self.iteration += 1
            self._call("after_epoch")
        self._call("after_train")
        return self.loss_history.history

    def run_iteration(self, images: Tensor, labels: Tensor) -> None:
        images = prepare_images(normalize(images.to(self.device, non_blocking=True)),
                                self.compute)
        labels = labels.to(self.device, non_blocking=True).long()
        with self.autocast:
            output = self.forward(images)
            old_output = None
            if self.old_forward is not None:
                with torch.no_grad():
                    old_output = self.old_forward(images)
            self.terms = self.learner.loss(LossInputs(
                step=self.step, output=output, labels=labels, old_output=old_output,
                parameters=self.parameters, batch=self.global_batch))
        self._call("after_loss")
        self.optimizer.zero_grad(set_to_none=True)
        sum(self.terms.values()).backward()
        state = IterationState(self.step, self.epoch, self.iteration, self.parameters,
                               self.global_batch)
        self.learner.after_backward(state)
        self.optimizer.step()
        self.learner.after_update(state)

    def _call(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self)

    # ----- state of an unfinished step ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an epoch boundary needs to continue exactly."""
        return {"epoch": self.epoch + 1, "iteration": self.iteration,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "learner": self.learner.state_dict(),
                "hooks": {type(h).__name__: h.state_dict() for h in self.hooks}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.learner.load_state_dict(state["learner"])
        for hook in self.hooks:
            hook.load_state_dict(state["hooks"].get(type(hook).__name__, {}))
        self.start_epoch, self.iteration = state["epoch"], state["iteration"]


def optimizer_groups(groups: Sequence[ParameterGroup], recipe: StepRecipe) -> list[dict]:
    """SGD parameter groups from the learner's (the poly schedule scales `lr_factor`)."""
    return [{"params": list(group.parameters), "lr": recipe.lr * group.lr_factor,
             "lr_factor": group.lr_factor,
             "weight_decay": (recipe.weight_decay if group.weight_decay is None
                              else group.weight_decay)}
            for group in groups if group.parameters]


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients (used on the deep copy of the previous model)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
