"""Seeded training samples: the random crop of every sample is a function of (seed, step,
epoch, position), so batches are the same for any number of loader workers and of ranks, and
each rank decodes only its own slice of every global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.data.dataset import StepDataset
from bench.data.loading import (
    EMBEDDED_WORKERS,
    MAX_AUTO_WORKERS,
    epoch_order,
    resolve_num_workers,
)
from bench.data.transforms import TrainTransform, crop_box
from bench.errors import BenchError
from tests.engine_helpers import spec_of

RANKS = 2
PROTOCOL = "voc-15-5"


def draws(*values: float):
    sequence = iter(values)
    return lambda: next(sequence)


def test_crop_box_takes_the_first_try_that_fits():
    # 375 x 500 image (area 187,500). Try 1: area draw 0.25 -> 187,500 x (0.5 + 1.5 x 0.25) =
    # 164,062.5 px, aspect draw 0.5 -> exp(0) = 1 -> 405 x 405 (sqrt 405.04), taller than 375:
    # rejected. Try 2: area draw 0 -> 93,750 px -> 306 x 306 (sqrt 306.19); top draw 0.5 ->
    # int(0.5 x 70) = 35 of 0..69, left draw 0.25 -> int(0.25 x 195) = 48 of 0..194.
    assert crop_box(375, 500, draws(0.25, 0.5, 0.0, 0.5, 0.5, 0.25)) == (35, 48, 306, 306)
    # aspect draw 1 - tiny -> 4/3: sqrt(93,750 x 4/3) = 353.55 -> 354 wide, 265.17 -> 265 high
    assert crop_box(375, 500, draws(0.0, 0.999999999, 0.0, 0.0)) == (0, 0, 265, 354)


def test_crop_box_falls_back_to_the_central_crop_with_the_aspect_clamped():
    too_big = [0.99, 0.5] * 10  # 1.985 x the area every try: never fits
    # 500 / 375 = 4/3 is inside 3/4..4/3: the whole image
    assert crop_box(375, 500, draws(*too_big)) == (0, 0, 375, 500)
    # 100 x 500 (aspect 5): width clamped to round(100 x 4/3) = 133, centred at (500-133)//2
    assert crop_box(100, 500, draws(*too_big)) == (0, 183, 100, 133)
    # 500 x 100 (aspect 1/5): height clamped to round(100 / (3/4)) = 133, centred at 183
    assert crop_box(500, 100, draws(*too_big)) == (183, 0, 133, 100)


def test_a_sample_s_crop_depends_on_its_seed_only():
    generator = np.random.default_rng(0)
    image = torch.from_numpy(generator.integers(0, 255, (3, 30, 40), dtype=np.uint8))
    label = generator.choice(np.array([0, 3, 16, 255], np.uint8), (30, 40))
    transform = TrainTransform(24)
    first, again, other = (transform(image, label, seed) for seed in (11, 11, 12))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert first[0].shape == (3, 24, 24) and first[0].dtype == torch.uint8
    assert first[1].shape == (24, 24) and first[1].dtype == torch.uint8
    assert set(first[1].unique().tolist()) <= {0, 3, 16, 255}  # nearest: no new values


def test_a_flip_mirrors_the_crop():
    """A label whose every column holds its own index: after the crop, the target's columns
    run left to right, or right to left exactly when the sample's draws say flip."""
    import random

    image = torch.zeros(3, 30, 40, dtype=torch.uint8)
    label = np.tile(np.arange(40, dtype=np.uint8), (30, 1))
    flips = set()
    for seed in range(12):
        draw = random.Random(seed).random
        _, left, _, width = crop_box(30, 40, draw)
        flipped = draw() < 0.5
        flips.add(flipped)
        _, target = TrainTransform(16)(image, label, seed)
        row = target[0].long()
        steps = row[1:] - row[:-1]
        assert bool((steps <= 0).all() if flipped else (steps >= 0).all())
        assert left <= int(row.min()) and int(row.max()) < left + width
    assert flips == {True, False}


def test_epoch_order_cuts_a_permutation_into_full_batches():
    batches = epoch_order(10, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(sum(batches, []))) == 8
    small = epoch_order(3, 8, torch.Generator().manual_seed(0))  # with replacement
    assert len(small) == 1 and len(small[0]) == 8 and set(small[0]) <= {0, 1, 2}


def test_num_workers_auto_uses_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(6)))
    assert resolve_num_workers("auto", synthetic=False) == 5
    assert resolve_num_workers("auto", synthetic=True) == EMBEDDED_WORKERS
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert resolve_num_workers("auto", synthetic=False) == 2
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks share the node's 6 CPUs
    assert resolve_num_workers("auto", synthetic=False) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(128)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resolve_num_workers("auto", synthetic=False) == MAX_AUTO_WORKERS
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})
    assert resolve_num_workers("auto", synthetic=False) == 0
    assert resolve_num_workers("auto", synthetic=True) == min(EMBEDDED_WORKERS, 1)  # <= CPUs
    assert resolve_num_workers(3, synthetic=True) == 3 and resolve_num_workers("2", False) == 2
    for bad in ("many", -1, "1.5", True):
        with pytest.raises(BenchError, match="is not a number of loader worker processes"):
            resolve_num_workers(bad, synthetic=False)


# ----- the batches of a real step ---------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    os.environ["CSS_BENCH_CACHE"] = str(folder)
    spec_of(PROTOCOL, "ft", folder / "runs")  # generates the tiny embedded data once
    return folder


def scenario_of(cache: Path, *overrides: str):
    from bench.engine.runner import Runner

    os.environ["CSS_BENCH_CACHE"] = str(cache)
    return Runner(spec_of(PROTOCOL, "ft", cache / "runs", *overrides),
                  log=lambda _: None).scenario


def batches_of(scenario, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Epochs 0 and 1 of steps 0 and 1, then one pass over step 1 (labels widened)."""
    found = []
    for step in (0, 1):
        for epoch in (0, 1):
            found += list(scenario.train_batches(step, epoch, batch_size))
    found += [(images.cpu(), labels.cpu()) for images, labels in
              scenario.pass_batches(1, batch_size)]
    return found


def test_zero_and_two_workers_give_identical_batches(cache):
    inline = batches_of(scenario_of(cache, "data.num_workers=0"), 5)
    workers = batches_of(scenario_of(cache, "data.num_workers=2"), 5)
    assert len(inline) == len(workers) > 4
    for (images, labels), (other_images, other_labels) in zip(inline, workers, strict=True):
        assert torch.equal(images, other_images) and torch.equal(labels, other_labels)


def test_the_pass_is_seeded_by_position_not_by_the_global_rng(cache):
    scenario = scenario_of(cache)
    torch.manual_seed(1)
    first = [labels for _, labels in scenario.pass_batches(1, 4)]
    torch.manual_seed(2)
    second = [labels for _, labels in scenario.pass_batches(1, 4)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _rank_worker(rank: int, port: int, cache: str, batch_size: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=RANKS)
    try:
        scenario = scenario_of(Path(cache), "data.num_workers=0")
        decoded: list[int] = []
        for step in (0, 1):
            dataset = scenario.train_data(step)
            original = dataset._decoded

            def counting(index: int, original=original, step=step) -> tuple:
                decoded.append((step, index))
                return original(index)

            dataset._decoded = counting
        batches = batches_of(scenario, batch_size)
        torch.save({"batches": batches, "decoded": decoded}, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("batch_size", [None, 4], ids=["uneven-slices", "even-slices"])
def test_two_ranks_see_exactly_the_images_and_crops_of_one_process(cache, tmp_path,
                                                                   batch_size):
    if batch_size is None:  # a batch size that leaves one item in step 1's last batch
        items = len(scenario_of(cache, "data.num_workers=0").train_data(1))
        batch_size = next(b for b in range(3, items) if items % b == 1)
    mp.spawn(_rank_worker, args=(_free_port(), str(cache), batch_size, str(tmp_path)),
             nprocs=RANKS, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]
    scenario = scenario_of(cache, "data.num_workers=0")
    single = batches_of(scenario, batch_size)
    assert all(len(r["batches"]) == len(single) for r in ranks)
    empty_slices = 0
    for number, (images, labels) in enumerate(single):
        parts = [r["batches"][number] for r in ranks]
        empty_slices += sum(len(part[1]) == 0 for part in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), images)
        assert torch.equal(torch.cat([p[1].long() for p in parts]), labels.long())
    # every rank decoded only its own items: together, each item of the single process once
    decoded = [r["decoded"] for r in ranks]
    counts = {}
    for step in (0, 1):
        for epoch in (0, 1):
            for batch in scenario.epoch_batches(step, epoch, batch_size):
                for index in batch:
                    counts[(step, index)] = counts.get((step, index), 0) + 1
    pass_items = len(scenario.train_data(1))
    for index in range(pass_items):
        counts[(1, index)] = counts.get((1, index), 0) + 1
    together: dict = {}
    for rank_decoded in decoded:
        for item in rank_decoded:
            together[item] = together.get(item, 0) + 1
    assert together == counts
    assert all(0 < len(d) < sum(counts.values()) for d in decoded)
    if batch_size != 4:  # the pass's last batch of one item leaves rank 1 an empty slice
        assert pass_items % batch_size == 1 and empty_slices >= 1


def test_a_direct_index_draws_from_torch_s_generator(tmp_path):
    from PIL import Image

    from bench.data.layouts import Sample

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.zeros((20, 30), np.uint8), mode="L").save(tmp_path / "a.png")
    dataset = StepDataset([Sample("a", tmp_path / "a.jpg", tmp_path / "a.png")],
                          np.arange(256, dtype=np.uint8), TrainTransform(8))
    torch.manual_seed(0)
    first = dataset[0]
    torch.manual_seed(0)
    assert torch.equal(dataset[0][1], first[1])
    assert torch.equal(dataset[(0, 5)][0], dataset[(0, 5)][0])


def test_an_image_and_label_of_different_sizes_are_named(tmp_path):
    from PIL import Image

    from bench.data.layouts import Sample

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.zeros((21, 30), np.uint8), mode="L").save(tmp_path / "a.png")
    dataset = StepDataset([Sample("a", tmp_path / "a.jpg", tmp_path / "a.png")],
                          np.arange(256, dtype=np.uint8), TrainTransform(8))
    with pytest.raises(BenchError, match=r"a\.jpg is 30x20 px but its label .*a\.png is 30x21"):
        dataset[0]
