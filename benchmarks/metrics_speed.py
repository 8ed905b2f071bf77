"""Throughput of ConfusionMatrix.update against the 50 M labelled pixels/s target.

Run: python3 benchmarks/metrics_speed.py [--repeats 20] [--threads N]

Prints, for 21 (VOC) and 151 (ADE20K) classes, batches of 8 and 16 x 512 x 512 and int64 (argmax
output) or uint8 (PNG labels) inputs, the labelled pixels per second of `update` from the median
wall time and the median CPU time of the repeats, its ratio to the target, and the same for
reference implementations:
  unchecked  the same int16/int32 index and bincount as `update` without the range checks;
  int64      no mask, ignored pixels sent to a discard bin, but int64 index temporaries;
  naive      boolean-mask the labelled pixels, int64 index, bincount (the usual implementation).
Labels are blocky like real segmentation maps (runs of one class make bincount hit one bin
repeatedly, which is slower than uniform noise), with ~10 % ignored pixels and ~20 % of the
predictions wrong.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from bench.metrics import IGNORE_INDEX, ConfusionMatrix

TARGET_PIXELS_PER_SECOND = 50e6


def make_batch(
    batch: int, num_classes: int, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky target (32 x 32 cells of one class), ignore band, prediction with 20 % noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (batch, 32, 32), generator=generator)
    target = coarse.repeat_interleave(16, dim=1).repeat_interleave(16, dim=2)
    target[:, :, ::10] = IGNORE_INDEX
    prediction = target.clamp(max=num_classes - 1)
    noise = torch.rand(target.shape, generator=generator) < 0.2
    random_classes = torch.randint(0, num_classes, target.shape, generator=generator)
    prediction = torch.where(noise, random_classes, prediction)
    return prediction.to(dtype), target.to(dtype)


def naive_update(prediction: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    labelled = target != IGNORE_INDEX
    index = target[labelled].long() * n + prediction[labelled].long()
    return torch.bincount(index, minlength=n * n).view(n, n)


def int64_update(prediction: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    index = target.reshape(-1).long() * n + prediction.reshape(-1).long()
    return torch.bincount(index, minlength=256 * n)[: n * n].view(n, n)


def unchecked_update(prediction: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """The shipped fast path without its range checks: shows what validation costs."""
    dtype = torch.int16 if 256 * n <= 32767 else torch.int32
    index = torch.add(prediction.reshape(-1).to(dtype), target.reshape(-1).to(dtype), alpha=n)
    return torch.bincount(index, minlength=256 * n)[: n * n].view(n, n)


def time_it(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (all threads of this process), in seconds.

    CPU time is robust when other jobs share the box, and since bincount is single-threaded
    it is a conservative bound: wall time on idle cores is at most the CPU time.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; M labelled px/s as wall / CPU-time medians; "
        "x target = CPU-time speed / 50 M/s"
    )
    header = (
        f"{'classes':>7} {'batch':>10} {'dtype':>5} | {'update':>11} {'x target':>8} | "
        f"{'unchecked':>11} {'int64':>11} {'naive':>11}"
    )
    print(header)
    print("-" * len(header))
    for num_classes in (21, 151):
        for batch in (8, 16):
            for dtype in (torch.int64, torch.uint8):
                prediction, target = make_batch(batch, num_classes, dtype)
                labelled = int((target != IGNORE_INDEX).sum())
                metric = ConfusionMatrix(num_classes)
                expected = naive_update(prediction, target, num_classes)
                metric.update(prediction, target)
                assert torch.equal(metric.matrix, expected), "update disagrees with naive"
                for reference in (int64_update, unchecked_update):
                    assert torch.equal(reference(prediction, target, num_classes), expected)
                speeds = {}
                for name, fn in (
                    ("update", lambda p=prediction, t=target, m=metric: m.update(p, t)),
                    ("unchecked", partial(unchecked_update, prediction, target, num_classes)),
                    ("int64", partial(int64_update, prediction, target, num_classes)),
                    ("naive", partial(naive_update, prediction, target, num_classes)),
                ):
                    wall, cpu = time_it(fn, args.repeats)
                    speeds[name] = f"{labelled / wall / 1e6:>5.0f}/{labelled / cpu / 1e6:<5.0f}"
                    if name == "update":
                        ratio = labelled / cpu / TARGET_PIXELS_PER_SECOND
                dtype_name = str(dtype).removeprefix("torch.")
                print(
                    f"{num_classes:>7} {f'{batch}x512x512':>10} {dtype_name:>5} | "
                    f"{speeds['update']} {ratio:>8.1f} | "
                    f"{speeds['unchecked']} {speeds['int64']} {speeds['naive']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
