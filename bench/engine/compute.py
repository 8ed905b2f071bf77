"""How a step's arithmetic runs on its device: precision (identity) and the execution settings
that leave the arithmetic alone (not identity).

- `trainer.precision=bf16` runs the forward passes (the current model's, the old model's under
  no_grad, the evaluation's) and the losses under bf16 autocast, on CUDA and on the CPU alike, so
  a bf16 record means bf16 on any device. Part of a run's identity: it changes the numbers.
- `trainer.channels_last` (auto: on CUDA) stores activations and weights NHWC, the layout
  tensor cores read; `trainer.compile` passes the model (and the old model) through
  `torch.compile`; `trainer.cudnn_benchmark` lets cuDNN time its algorithms for the training
  shapes (evaluation runs without it: full-image evaluation has many shapes, each would be timed
  again). These change layouts, kernels and fusion, not the arithmetic: `bench.config`'s
  EXECUTION_KEYS.

On an Ampere or newer GPU, fp32 convolutions run in TF32 (PyTorch's default for cuDNN); fp32
matrix products stay fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import BenchError


@dataclass(frozen=True)
class ComputeSettings:
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    compile_backend: str = "inductor"  # benchmarks/gpu_step.py's CPU smoke test uses "eager"

    @classmethod
    def resolve(cls, channels_last: bool | str, compile_model: bool, cudnn_benchmark: bool,
                device: torch.device) -> ComputeSettings:
        """Settings for `device` from the trainer config (`channels_last: auto` = on CUDA)."""
        text = str(channels_last).strip().lower()
        if text not in ("auto", "true", "false"):
            raise BenchError(f"trainer.channels_last={channels_last} is not auto, true or false")
        layout = device.type == "cuda" if text == "auto" else text == "true"
        return cls(channels_last=layout, compile=bool(compile_model),
                   cudnn_benchmark=bool(cudnn_benchmark) and device.type == "cuda")

    def describe(self) -> str:
        return (f"channels_last={self.channels_last}, compile={self.compile}, "
                f"cudnn_benchmark={self.cudnn_benchmark}")


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device when the recipe's precision is bf16 (CUDA or CPU)."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module | None, settings: ComputeSettings) -> nn.Module | None:
    """The model in the settings' memory layout (in place; None passes through)."""
    if model is not None and settings.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def prepare_images(images: torch.Tensor, settings: ComputeSettings) -> torch.Tensor:
    if settings.channels_last:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def compiled(module: Callable[..., Any], settings: ComputeSettings) -> Callable[..., Any]:
    """`torch.compile(module)` when asked for; compilation happens at the first call."""
    if not settings.compile:
        return module
    return torch.compile(module, backend=settings.compile_backend)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN's algorithm timing on, for the duration of a training loop only."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
