"""What step t of a run trains and is tested on: the image lists the split index selects, the
label tables of the protocol's rules, the transforms, and the loaders over them (the role of
Continuum's `SegmentationClassIncremental`).

Training batches are drawn in an order seeded by (seed, step, epoch), and every sample's random
crop and flip by (seed, step, epoch, its position in the epoch): a batch is the same whatever
the number of loader workers or of data-parallel ranks. Each rank decodes only its own slice of
every global batch (the slice `distributed.shard` gives it), so N ranks see exactly the inputs
of one process and pay 1/N of the decoding each. One loader per step serves every epoch, its
workers kept alive between epochs (`data.num_workers`, `data.prefetch_factor`; pinned memory on
a GPU).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from bench.data.dataset import StepDataset
from bench.data.loading import (
    PlannedBatches,
    empty_batch,
    epoch_order,
    in_order,
    make_loader,
    planned_slices,
)
from bench.data.split_index import SplitIndex
from bench.data.transforms import eval_transform, normalize, train_transform
from bench.engine import distributed
from bench.engine.seeds import derived_seed
from bench.errors import BenchError
from protocols import Protocol
from protocols.rules import test_lut, train_lut


def _digest(values: Iterable[Any]) -> str:
    return hashlib.sha256("\n".join(str(v) for v in values).encode()).hexdigest()[:16]


def step0_identity(protocol: Protocol, index: SplitIndex) -> dict[str, Any]:
    """What step 0 learns from and is tested on (part of the shared step-0 cache key)."""
    return {
        "classes": list(protocol.step_classes(0)),
        "data": index.digest(protocol, steps=[0]),
        "train_lut": _digest(train_lut(protocol, 0).tolist()),
        "test_lut": _digest(test_lut(protocol, 0).tolist()),
        "eval_crop": protocol.eval_crop,
    }


class Scenario:
    """The data of every step of one (planned) protocol on one data source."""

    def __init__(self, protocol: Protocol, index: SplitIndex, describe: str, crop: int,
                 seed: int, device: torch.device, num_workers: int = 0, cache_bytes: int = 0,
                 eval_batch_size: int = 8, prefetch_factor: int = 2) -> None:
        self.protocol = protocol
        self.index = index
        self.describe = describe
        self.crop = crop
        self.seed = seed
        self.device = device
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        # decoded files kept in memory, the budget shared among the workers (persistent: each
        # keeps what it decoded across the step's epochs)
        self.cache_bytes = cache_bytes // max(1, num_workers)
        self.eval_batch_size = eval_batch_size
        self._train: dict[int, StepDataset] = {}
        # the current step's training loader, its workers alive across epochs
        self._loader: tuple[int, DataLoader, PlannedBatches] | None = None

    # ----- datasets -------------------------------------------------------------------------
    def train_count(self, step: int) -> int:
        return len(self.index.select(self.protocol, step, "train"))

    def test_count(self, step: int) -> int:
        return len(self.index.select(self.protocol, step, "val"))

    def train_data(self, step: int) -> StepDataset:
        if step not in self._train:
            samples = self.index.select(self.protocol, step, "train")
            if not samples:
                raise BenchError(
                    f"step {step} of {self.protocol.name} has no training image on "
                    f"{self.describe}: no image contains its classes "
                    f"{self.protocol.new_classes(step)} under the {self.protocol.mode} rules; "
                    "use a larger dataset or another protocol")
            self._train[step] = StepDataset(samples, train_lut(self.protocol, step),
                                            train_transform(self.crop), self.cache_bytes)
        return self._train[step]

    def test_data(self, step: int) -> StepDataset:
        samples = self.index.select(self.protocol, step, "val")
        return StepDataset(samples, test_lut(self.protocol, step),
                           eval_transform(self.crop, self.protocol.eval_crop), self.cache_bytes)

    # ----- training loaders -----------------------------------------------------------------
    def _step_loader(self, step: int) -> tuple[DataLoader, PlannedBatches]:
        """The step's loader (created once per step; the previous step's workers end)."""
        if self._loader is None or self._loader[0] != step:
            self._loader = None  # the previous step's workers shut down with their loader
            batches = PlannedBatches()
            loader = make_loader(self.train_data(step), batches, self.num_workers,
                                 pin_memory=self.device.type == "cuda", persistent=True,
                                 prefetch_factor=self.prefetch_factor)
            self._loader = (step, loader, batches)
        return self._loader[1], self._loader[2]

    def epoch_batches(self, step: int, epoch: int, batch_size: int) -> list[list[int]]:
        """The global batches (dataset indices) of one training epoch."""
        generator = torch.Generator().manual_seed(derived_seed(self.seed, step, epoch, "order"))
        return epoch_order(len(self.train_data(step)), batch_size, generator)

    def iterations(self, step: int, batch_size: int) -> int:
        count = self.train_count(step)
        return 1 if 0 < count < batch_size else count // batch_size

    def _rank_batches(self, step: int, batches: list[list[int]], batch_size: int,
                      draw: int | str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's slice of every global batch, decoded by this rank only; sample seeds
        from (seed, step, `draw` (the epoch, or "pass"), position in the pass)."""
        positions = [distributed.shard(torch.arange(len(batch))).tolist() for batch in batches]
        slices = planned_slices(batches, batch_size, positions,
                                lambda position: derived_seed(self.seed, step, draw, position))
        loader, planned = self._step_loader(step)
        planned.plan = [items for items in slices if items]
        decoded = iter(loader)
        for items in slices:
            yield next(decoded) if items else empty_batch(self.crop)

    def train_batches(self, step: int, epoch: int,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's slice of every global batch of an epoch (uint8 images and labels, on the
        CPU)."""
        return self._rank_batches(step, self.epoch_batches(step, epoch, batch_size), batch_size,
                                  epoch)

    train_loader = train_batches

    def pass_batches(self, step: int,
                     batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One unshuffled pass over the step's training data, normalised, on the device: this
        rank's slice of every batch, even an empty one (hooks reduce over ranks at every
        batch); the slices sum to the whole, and the random crops are those of one process."""
        batches = in_order(len(self.train_data(step)), batch_size)
        for images, labels in self._rank_batches(step, batches, batch_size, "pass"):
            yield normalize(images.to(self.device)), labels.to(self.device).long()

    # ----- evaluation -----------------------------------------------------------------------
    def test_loader(self, step: int) -> DataLoader:
        """This rank's share of the test images (every image once over all ranks: the
        evaluation transform is deterministic, so any split gives the single-process matrix)."""
        dataset: Dataset = self.test_data(step)
        if distributed.world_size() > 1:
            dataset = Subset(dataset, distributed.shard_indices(len(dataset)))
        size = 1 if self.protocol.eval_crop == "full" else self.eval_batch_size
        return make_loader(dataset, None, self.num_workers, self.device.type == "cuda",
                           prefetch_factor=self.prefetch_factor, batch_size=size)
