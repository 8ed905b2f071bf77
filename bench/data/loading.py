"""Loaders of seeded samples: the order of an epoch, the batches one rank decodes, the workers.

A training epoch is a list of global batches of dataset indices (`epoch_order`, seeded by the
caller). The loader is handed, per pass, the batches THIS rank decodes, each item an `(index,
seed)` pair (`PlannedBatches`): the seed fixes the item's random crop, so what a batch holds does
not depend on how many workers decode it or on how many ranks share the global batch, and no
rank decodes another rank's images.

`data.num_workers: auto` is the number of CPUs this process may use less one (the training
process itself), at most `MAX_AUTO_WORKERS`; on the embedded synthetic data it is
`EMBEDDED_WORKERS` (at most the CPUs available), measured fastest there (README, "Speed
figures").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.errors import BenchError

# Beyond ~16 workers a rank's loader is limited by its own collation and queues, and every
# worker holds a copy of the dataset's lists; a GPU step at 40 % of an H200's peak needs about
# 1,000 images/s, i.e. ~10 workers at 100 images/s each.
MAX_AUTO_WORKERS = 16
# The embedded data (96x72 images, 64 px crops, decoded once into the shared cache): 4 epochs of
# voc-15-1's step 0 at the embedded recipe's batch 8, 2 torch threads, on this project's quiet
# 2-core machine: 17.6 and 19.4 s with 0 workers, 22.1 s with 1, 20.6 and 21.7 s with 2 (torch
# 2.14.1): workers only take cores from the training process there. (On a machine shared with
# other jobs, load ~13, workers won: 418 s with 0, 243 s with 2 at batch 16; README "Speed
# figures".)
EMBEDDED_WORKERS = 0

Planned = tuple[int, int]  # (dataset index, the sample's seed)


def available_cpus() -> int:
    """CPUs this process may use: its affinity, bounded by Slurm's CPUs per task when set,
    shared among the ranks of a job on one node (LOCAL_WORLD_SIZE)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return min(cpus, int(slurm))
    local_ranks = os.environ.get("LOCAL_WORLD_SIZE", "")
    if local_ranks.isdigit() and int(local_ranks) > 1:
        cpus = max(1, cpus // int(local_ranks))
    return cpus


def resolve_num_workers(value: int | str, synthetic: bool) -> int:
    """The number of loader workers `data.num_workers` asks for (`auto` or a number >= 0)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        if synthetic:
            return min(EMBEDDED_WORKERS, available_cpus())
        return max(0, min(MAX_AUTO_WORKERS, available_cpus() - 1))
    try:
        workers = int(value)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0 or isinstance(value, bool) or str(value).strip() != str(workers):
        raise BenchError(f"data.num_workers={value} is not a number of loader worker processes; "
                         "use auto or an integer >= 0 (0 loads in the training process)")
    return workers


def epoch_order(count: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """The global batches of one epoch: a permutation cut into full batches (the last partial
    batch is dropped, as MiB); fewer images than a batch draw one full batch with replacement
    (a batch of one image cannot pass BatchNorm in training)."""
    if count == 0:
        return []
    if count < batch_size:
        return [torch.randint(count, (batch_size,), generator=generator).tolist()]
    order = torch.randperm(count, generator=generator).tolist()
    full = count // batch_size
    return [order[b * batch_size:(b + 1) * batch_size] for b in range(full)]


def in_order(count: int, batch_size: int) -> list[list[int]]:
    """Every index once, in order, in batches (the last one may be short)."""
    return [list(range(start, min(start + batch_size, count)))
            for start in range(0, count, batch_size)]


class PlannedBatches(Sampler[list[Planned]]):
    """A batch sampler that yields the batches set for the coming pass (`plan`): one loader,
    and with it its persistent workers, serves every epoch of a step."""

    def __init__(self) -> None:
        self.plan: list[list[Planned]] = []

    def __iter__(self) -> Iterator[list[Planned]]:
        return iter(list(self.plan))

    def __len__(self) -> int:
        return len(self.plan)


def make_loader(dataset: Dataset, batches: Sampler | None, num_workers: int, pin_memory: bool,
                persistent: bool = False, prefetch_factor: int = 2,
                batch_size: int | None = None) -> DataLoader:
    """A DataLoader over `batches` (a batch sampler) or, without one, over the dataset in order
    in batches of `batch_size`."""
    workers = {"num_workers": num_workers}
    if num_workers > 0:
        workers.update(persistent_workers=persistent, prefetch_factor=max(1, prefetch_factor))
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, pin_memory=pin_memory, **workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=pin_memory,
                      **workers)


def empty_batch(crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A rank's empty slice of a short global batch (uint8 images and labels)."""
    return (torch.empty(0, 3, crop, crop, dtype=torch.uint8),
            torch.empty(0, crop, crop, dtype=torch.uint8))


def planned_slices(batches: Sequence[Sequence[int]], batch_size: int,
                   positions_of: Sequence[Sequence[int]],
                   seed_of: Callable[[int], int]) -> list[list[Planned]]:
    """For each global batch, the (index, seed) items of this rank's positions in it;
    `positions_of[b]` are this rank's positions within batch b, `seed_of(position in the
    epoch)` the item's seed."""
    slices = []
    for number, batch in enumerate(batches):
        start = number * batch_size
        slices.append([(batch[p], seed_of(start + p)) for p in positions_of[number]])
    return slices
