"""`logger=tensorboard`: TensorBoard event files per step, written by rank 0 under
`<run directory>/tensorboard/step<t>/` (so `tensorboard --logdir runs` shows every run).

Per step: every loss term and the learning rate each `logger.every` iterations (x = the step's
iteration), the per-epoch means of the terms and the training images/s (x = epoch), and the
step's old / new / all / hIoU once evaluated. A resumed step purges what the killed attempt
logged after its last epoch checkpoint, so the curves have no doubled stretch.

The `tensorboard` package is an optional extra (`pip install 'css-bench[tensorboard]'`); asking
for this logger without it stops the run before any training, with one line that says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.engine import distributed
from bench.engine.cost import CostMeter
from bench.engine.hooks import HookBase
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.engine.trainer import StepTrainer

KINDS = ("none", "tensorboard")


def check_logger(settings: dict[str, Any]) -> bool:
    """Whether TensorBoard logging is asked for; BenchError when it cannot be done."""
    kind = str(settings.get("kind", "none"))
    if kind not in KINDS:
        raise BenchError(f"logger kind {kind!r} is unknown; use logger=none or "
                         "logger=tensorboard")
    if kind != "tensorboard":
        return False
    if importlib.util.find_spec("tensorboard") is None:
        raise BenchError("logger=tensorboard needs the tensorboard package, which is not "
                         "installed: pip install 'css-bench[tensorboard]' (or drop "
                         "logger=tensorboard)")
    every = settings.get("every", 20)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise BenchError(f"logger.every={every} is not a number of iterations >= 1")
    return True


def _writer(directory: Path, purge_step: int | None = None) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(directory), purge_step=purge_step)


class TensorBoardLogger(HookBase):
    """Loss terms, learning rate and per-epoch means of one step's training (rank 0 only).
    Placed after the checkpoint hook, so that a resumed step knows where it resumes."""

    def __init__(self, directory: Path, every: int, meter: CostMeter | None = None) -> None:
        self.directory, self.every, self.meter = directory, every, meter
        self.writer: Any = None

    def before_train(self, trainer: StepTrainer) -> None:
        if distributed.is_main():
            resumed = trainer.start_epoch > 0
            self.writer = _writer(self.directory, trainer.iteration if resumed else None)

    def after_iteration(self, trainer: StepTrainer) -> None:
        if self.writer is None or (trainer.iteration + 1) % self.every:
            return
        iteration = trainer.iteration + 1
        for name, value in trainer.terms.items():
            self.writer.add_scalar(f"loss/{name}", float(value.detach()), iteration)
        self.writer.add_scalar("loss/total", float(sum(v.detach() for v in
                                                       trainer.terms.values())), iteration)
        self.writer.add_scalar("lr", trainer.optimizer.param_groups[0]["lr"], iteration)

    def after_epoch(self, trainer: StepTrainer) -> None:
        if self.writer is None:
            return
        epoch = trainer.epoch + 1
        for name, value in trainer.loss_history.history[-1].items():
            self.writer.add_scalar(f"epoch/loss_{name}", value, epoch)
        if self.meter is not None and self.meter.seconds > 0:
            self.writer.add_scalar("epoch/train_images_per_second",
                                   self.meter.images / self.meter.seconds, epoch)
        self.writer.flush()

    def after_train(self, trainer: StepTrainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def log_scores(directory: Path, step: int, scores: dict[str, Any],
               cost: dict[str, Any] | None) -> None:
    """The evaluated step's scores (x = the protocol step) and its device-hours."""
    if not distributed.is_main():
        return
    writer = _writer(directory)
    for key in ("old", "new", "all", "hiou"):
        if scores.get(key) is not None:
            writer.add_scalar(f"scores/{key}", scores[key], step)
    if cost and cost.get("device_hours") is not None:
        writer.add_scalar("cost/device_hours", cost["device_hours"], step)
    writer.close()
