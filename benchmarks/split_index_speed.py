"""Split indexing speed: scan N label files of 500x375 pixels (VOC-sized) into the split index.

Target (issue 2): 10,000 files in at most 30 s on 2 cores. Prints the scan time, files per second,
the ratio to the target, the serial/parallel speed-up and the time of the per-step selections.

    python benchmarks/split_index_speed.py [--files 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.layouts import VocLayout
from bench.data.split_index import SplitIndex
from protocols import get_protocol

TARGET_SECONDS_PER_10K = 30.0


def _write_labels(args: tuple[Path, int, int]) -> None:
    folder, start, stop = args
    palette = [v for i in range(256) for v in (i, i, i)]
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        label = np.zeros((375, 500), dtype=np.uint8)
        for value in rng.choice(np.arange(1, 21), size=rng.integers(1, 4), replace=False):
            top, left = rng.integers(0, 250), rng.integers(0, 350)
            label[top - 3 : top + 123, max(left - 3, 0) : left + 153] = 255
            label[top : top + 120, left : left + 150] = value
        image = Image.fromarray(label, mode="P")
        image.putpalette(palette)
        image.save(folder / "SegmentationClassAug" / f"{i:06d}.png")


def make_layout(root: Path, count: int, workers: int) -> None:
    (root / "SegmentationClassAug").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train_aug.txt").write_text("".join(f"{i:06d}\n" for i in range(count)))
    (lists / "val.txt").write_text("")
    step = -(-count // (workers * 8))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_labels, [(root, s, min(s + step, count))
                                      for s in range(0, count, step)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "voc"
        started = time.perf_counter()
        make_layout(root, args.files, args.workers)
        print(f"generated {args.files} label files of 500x375 in "
              f"{time.perf_counter() - started:.1f} s")
        layout = VocLayout()
        timings = {}
        for workers in (1, args.workers):
            index = SplitIndex(root, lambda split: layout.samples(root, split), 21,
                               cache_dir=Path(tmp) / f"cache{workers}", log=lambda _: None,
                               workers=workers)
            started = time.perf_counter()
            index.presence("train")
            timings[workers] = time.perf_counter() - started
        scan = timings[args.workers]
        target = TARGET_SECONDS_PER_10K * args.files / 10_000
        print(f"scan with {args.workers} workers: {scan:.2f} s ({args.files / scan:.0f} files/s); "
              f"target <= {target:.0f} s: ratio {scan / target:.2f} "
              f"({'OK' if scan <= target else 'TOO SLOW'})")
        print(f"scan with 1 worker: {timings[1]:.2f} s; parallel speed-up "
              f"{timings[1] / scan:.2f}x")
        started = time.perf_counter()
        selections = 0
        for name in ("voc-15-1", "voc-15-1-disjoint", "voc-10-1", "voc-5-3-sequential"):
            protocol = get_protocol(name)
            for step in range(protocol.num_steps):
                index.select(protocol, step, "train")
                selections += 1
        elapsed = time.perf_counter() - started
        print(f"{selections} per-step selections (written as split files): {elapsed:.3f} s")
        started = time.perf_counter()
        again = SplitIndex(root, lambda split: layout.samples(root, split), 21,
                           cache_dir=Path(tmp) / f"cache{args.workers}", log=lambda _: None)
        again.select(get_protocol("voc-15-1"), 3, "train")
        elapsed = time.perf_counter() - started
        print(f"warm cache, first selection of a new process: {elapsed:.3f} s")


if __name__ == "__main__":
    main()
