"""Hooks of the step loop (detectron2's `HookBase`): each does one thing, at fixed points of the
loop, with its own state. The trainer calls every hook in order at each point:

    before_train, before_epoch, before_iteration, after_loss, after_iteration, after_epoch,
    after_train

Hooks with state (`state_dict`) are saved in epoch checkpoints with the model and restored on
resume, so a resumed step continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.nn import Module
from tqdm import tqdm

from bench.engine import distributed
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.engine.trainer import StepTrainer


class HookBase:
    def before_train(self, trainer: StepTrainer) -> None: ...
    def before_epoch(self, trainer: StepTrainer) -> None: ...
    def before_iteration(self, trainer: StepTrainer) -> None: ...
    def after_loss(self, trainer: StepTrainer) -> None: ...
    def after_iteration(self, trainer: StepTrainer) -> None: ...
    def after_epoch(self, trainer: StepTrainer) -> None: ...
    def after_train(self, trainer: StepTrainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class NonFiniteLoss(BenchError):
    pass


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    return base_lr * (1 - iteration / max(total, 1)) ** power


class PolyLR(HookBase):
    """The poly schedule of the field: lr = base (1 - iteration / total) ^ power."""

    def before_iteration(self, trainer: StepTrainer) -> None:
        recipe = trainer.recipe
        lr = poly_lr(recipe.lr, trainer.iteration, trainer.total_iterations, recipe.poly_power)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)


class LossHistory(HookBase):
    """The mean of every loss term over each epoch (over every rank's iterations)."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def before_epoch(self, trainer: StepTrainer) -> None:
        self.sums, self.count = {}, 0

    def after_iteration(self, trainer: StepTrainer) -> None:
        self.count += 1
        for key, value in trainer.terms.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float()

    def running_means(self) -> dict[str, float]:
        return {k: float(v / max(self.count, 1)) for k, v in self.sums.items()}

    def after_epoch(self, trainer: StepTrainer) -> None:
        means = {k: float(distributed.all_reduce_sum(v / max(self.count, 1))
                          / distributed.world_size()) for k, v in self.sums.items()}
        self.history.append(means)
        if not all(math.isfinite(v) for v in means.values()):
            raise NonFiniteLoss(f"non-finite mean loss at step {trainer.step}, epoch "
                                f"{trainer.epoch + 1}; earlier steps are intact")

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


class NonFiniteCheck(HookBase):
    """Stop at the first iteration whose loss is not finite, naming where and why."""

    def after_loss(self, trainer: StepTrainer) -> None:
        loss = sum(trainer.terms.values())
        if not bool(loss.isfinite()):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in trainer.terms.items())
            raise NonFiniteLoss(
                f"non-finite loss at step {trainer.step}, epoch {trainer.epoch + 1}, iteration "
                f"{trainer.iteration % max(trainer.iterations_per_epoch, 1) + 1} ({values}); "
                "earlier steps are intact. Lower the learning rate (trainer.lr / "
                "trainer.lr_incremental) or check the data")


class UnsoundStep(BenchError):
    """A step whose model is not sound: nothing of it is recorded or cached."""


def unsound_tensors(model: Module) -> list[str]:
    """Names of the parameters and buffers of `model` holding a NaN or an infinity."""
    return [name for name, tensor in model.state_dict().items()
            if tensor.is_floating_point() and not bool(tensor.isfinite().all())]


def require_sound(model: Module, where: str) -> None:
    """Raise UnsoundStep naming the non-finite tensors of `model`; `where` says when."""
    bad = unsound_tensors(model)
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise UnsoundStep(f"{where}: the model has non-finite values in {shown}; nothing of "
                          "this step was recorded. Lower the learning rate (trainer.lr / "
                          "trainer.lr_incremental) or check the data")


class Soundness(HookBase):
    """A step is done only with a sound model: after every epoch each parameter and buffer is
    finite (BatchNorm's running statistics included, which a finite loss does not guarantee),
    and the epoch's mean loss is at most `recipe.divergence_factor` times the loss of the step's
    first iteration (the model the step started from); otherwise the step stops before its
    epoch checkpoint, naming where."""

    def __init__(self) -> None:
        self.first_loss: float | None = None

    def after_iteration(self, trainer: StepTrainer) -> None:
        if self.first_loss is None:
            loss = sum(trainer.terms.values()).detach().float()
            self.first_loss = float(distributed.all_reduce_sum(loss)) / distributed.world_size()

    def after_epoch(self, trainer: StepTrainer) -> None:
        where = f"step {trainer.step}, epoch {trainer.epoch + 1} of {trainer.recipe.epochs}"
        require_sound(trainer.model, where)
        mean = sum(trainer.loss_history.history[-1].values())
        bound = trainer.recipe.divergence_factor * abs(self.first_loss or 0.0)
        if self.first_loss is not None and mean > bound:
            raise UnsoundStep(
                f"{where} diverged: its mean loss {mean:.4g} is above {bound:.4g} "
                f"(trainer.divergence_factor={trainer.recipe.divergence_factor:g} times the "
                f"first iteration's {self.first_loss:.4g}); nothing of this step was recorded. "
                "Lower the learning rate (trainer.lr / trainer.lr_incremental)")

    def state_dict(self) -> dict[str, Any]:
        return {"first_loss": self.first_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_loss = state.get("first_loss")


class BufferAveraging(HookBase):
    """Data-parallel ranks average their BatchNorm running statistics at each epoch's end
    (their update is linear in the batch mean, so this is the single-process value)."""

    def after_epoch(self, trainer: StepTrainer) -> None:
        distributed.average_buffers(trainer.model)


class EpochCheckpoint(HookBase):
    """Resume from the last finished epoch; save the trainer's state after each epoch (rank 0
    writes, every rank resumes from the same file)."""

    def __init__(self, path: Path, save: Callable[[Path, Any], None],
                 load: Callable[[Path], Any], log: Callable[[str], None]) -> None:
        self.path, self.save, self.load, self.log = path, save, load, log

    def before_train(self, trainer: StepTrainer) -> None:
        if self.path.is_file():
            trainer.load_state_dict(self.load(self.path))
            self.log(f"step {trainer.step}: resuming after epoch {trainer.start_epoch} of "
                     f"{trainer.recipe.epochs}")

    def after_epoch(self, trainer: StepTrainer) -> None:
        if distributed.is_main():
            self.save(self.path, trainer.state_dict())
        distributed.barrier()


class Progress(HookBase):
    """A progress bar on a terminal, or one line per epoch when quiet (batch jobs)."""

    def __init__(self, history: LossHistory, quiet: bool, log: Callable[[str], None]) -> None:
        self.history, self.quiet, self.log = history, quiet, log
        self.bar: tqdm | None = None

    def before_epoch(self, trainer: StepTrainer) -> None:
        if not self.quiet:
            self.bar = tqdm(total=trainer.iterations_per_epoch, leave=False, dynamic_ncols=True,
                            desc=f"step {trainer.step} epoch {trainer.epoch + 1}/"
                                 f"{trainer.recipe.epochs}")

    def after_iteration(self, trainer: StepTrainer) -> None:
        if self.bar is not None:
            self.bar.update(1)
            done = self.bar.n
            if done % 10 == 1 or done == trainer.iterations_per_epoch:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in
                                      self.history.running_means().items()})

    def after_epoch(self, trainer: StepTrainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.quiet:
            means = self.history.history[-1]
            self.log(f"step {trainer.step} epoch {trainer.epoch + 1}/{trainer.recipe.epochs}: "
                     + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
