"""What a step cost: wall time of training and evaluation, the devices, their peak memory and
the training throughput, metered by a hook whose state survives a resume.

Time is wall-clock on rank 0, measured at epoch boundaries (after the device has finished its
queued work), from the start of the training loop to its end: an epoch lost to a kill is not
counted, as its work is redone. Device-hours = (training + evaluation seconds) x devices, the
number of ranks of the job, each with one device (on the CPU: processes, whatever their
threads). Peak memory: on CUDA, the most memory torch allocated on a device during the step (the
largest over ranks); on the CPU, the peak resident set of the process since it started (torch has
no per-step figure there; loader workers not included).
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.engine import distributed
from bench.engine.hooks import HookBase

if TYPE_CHECKING:
    from bench.engine.trainer import StepTrainer


@lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_description(device: torch.device) -> dict[str, Any]:
    """{type, name, count}: the device model and how many the job uses (one per rank)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{_cpu_name()} ({torch.get_num_threads()} threads)"
    return {"type": device.type, "name": name, "count": distributed.world_size()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """{bytes, what}: the step's peak device memory (CUDA, largest over ranks) or the
    process's peak resident set (CPU)."""
    if device.type == "cuda":
        peak = torch.tensor(float(torch.cuda.max_memory_allocated(device)), device=device)
        largest = distributed.max_with_grad(peak) if distributed.world_size() > 1 else peak
        return {"bytes": int(largest.item()),
                "what": "peak memory allocated by torch on one device during the step "
                        "(largest over ranks)"}
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"bytes": int(kib) * 1024,
            "what": "peak resident memory of the training process since it started (CPU: no "
                    "per-step figure; loader workers not included)"}


class CostMeter(HookBase):
    """Training seconds and images of a step, accumulated over resumes (saved with each epoch
    checkpoint: it must come before the checkpoint hook). After each epoch `report(progress)`
    receives where the step stands, for `bench status`."""

    def __init__(self, device: torch.device,
                 report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.device = device
        self.report = report
        self.seconds = 0.0
        self.images = 0
        self.mark = 0.0

    def before_train(self, trainer: StepTrainer) -> None:
        synchronize(self.device)
        reset_peak_memory(self.device)
        self.mark = time.perf_counter()

    def _lap(self) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.seconds += now - self.mark
        self.mark = now

    def after_epoch(self, trainer: StepTrainer) -> None:
        self._lap()
        self.images += trainer.iterations_per_epoch * trainer.recipe.batch_size
        if self.report is not None and distributed.is_main():
            self.report({"epoch": trainer.epoch + 1, "epochs": trainer.recipe.epochs,
                         "iteration": trainer.iteration, "iterations": trainer.total_iterations,
                         "train_seconds": round(self.seconds, 3), "updated": time.time()})

    def after_train(self, trainer: StepTrainer) -> None:
        self._lap()

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "images": self.images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds = float(state.get("seconds", 0.0))
        self.images = int(state.get("images", 0))
