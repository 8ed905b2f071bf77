"""Training images/s of the real data path: read a 500x375 JPEG and its PNG label, remap the
label, random resized crop to 512 px and flip (seeded per sample), collate batches of 24, and
copy them to the GPU when there is one; for 0, 1, 2, ... loader workers.

The fixture is a generated VOC layout (`JPEGImages/`, `SegmentationClassAug/`, split lists) of
500x375 JPEGs (quality 90, 4:2:0, the embedded generator's scenes at VOC's typical size) and
palette PNG labels, read by the same layout reader, dataset and loader as `bench run`. Also
printed: the JPEG decoders compared (torchvision's against PIL's plus the array copy, ms per
image) and the previous data path (PIL decoding and torchvision's v2 transforms on PIL images,
in-process) for reference.

    python3 benchmarks/loader_speed.py [--workers 0,1,2] [--batches 6] [--images 96]

Targets (issue 15): at least 100 images/s per worker at 512 px, near-linear to 16 workers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data.dataset import StepDataset  # noqa: E402
from bench.data.images import read_image, read_image_tensor  # noqa: E402
from bench.data.layouts import VocLayout  # noqa: E402
from bench.data.loading import (  # noqa: E402
    MAX_AUTO_WORKERS,
    PlannedBatches,
    available_cpus,
    make_loader,
)
from bench.data.synth import _structure, render_sample, synth_spec, voc_palette  # noqa: E402
from bench.data.transforms import TrainTransform  # noqa: E402
from bench.engine.seeds import derived_seed  # noqa: E402

WIDTH, HEIGHT, CROP, BATCH = 500, 375, 512, 24


def fixture(root: Path, count: int) -> Path:
    """A VOC layout of `count` training images at 500x375 (generated once, then reused)."""
    marker = root / ".complete"
    if marker.is_file() and int(marker.read_text() or 0) >= count:
        return root
    spec = synth_spec("synth-voc", width=WIDTH, height=HEIGHT)
    structure, palette = _structure(spec.num_classes), voc_palette()
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        pixels, label = render_sample(spec, "train", index, structure)
        name = f"fixture_{index:05d}"
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        png = Image.fromarray(label)
        png.putpalette(palette)
        png.save(root / "SegmentationClassAug" / f"{name}.png")
        names.append(name)
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("".join(f"{n}\n" for n in names))
    (lists / "val.txt").write_text(f"{names[0]}\n")
    marker.write_text(str(count))
    return root


def decoders(samples: list, repeats: int = 3) -> None:
    """ms per JPEG: torchvision's decoder into a tensor vs PIL's plus the copy into a tensor."""
    def pil(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(read_image(path)).copy()).permute(2, 0, 1)

    for name, decode in (("torchvision.io.decode_jpeg", read_image_tensor), ("PIL", pil)):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for sample in samples:
                decode(sample.image)
            times.append(1000 * (time.perf_counter() - started) / len(samples))
        print(f"  {name:<27} {statistics.median(times):6.2f} ms per 500x375 JPEG "
              f"(min {min(times):.2f}, max {max(times):.2f}, {repeats} passes over "
              f"{len(samples)} images)")


def previous_path(samples: list, count: int) -> float:
    """Images/s of PIL decoding + torchvision v2 RandomResizedCrop/flip on PIL, in-process."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomResizedCrop(CROP, scale=(0.5, 2.0), antialias=True),
                            v2.RandomHorizontalFlip(), v2.ToImage()])
    lut = np.arange(256, dtype=np.uint8)
    started = time.perf_counter()
    for index in range(count):
        sample = samples[index % len(samples)]
        image = read_image(sample.image)
        label = lut[np.asarray(Image.open(sample.label))]
        transform(image, tv_tensors.Mask(torch.from_numpy(label)))
    return count / (time.perf_counter() - started)


def images_per_second(dataset: StepDataset, workers: int, batches: int,
                      device: torch.device) -> float:
    """Throughput of the training loader once its workers run (the first batch, which pays
    the workers' start, is not timed)."""
    planned = PlannedBatches()
    loader = make_loader(dataset, planned, workers, pin_memory=device.type == "cuda",
                         persistent=True, prefetch_factor=4)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    positions = range((batches + 1) * BATCH)
    items = [(order[p % len(order)], derived_seed(0, 0, 0, p)) for p in positions]
    planned.plan = [items[b * BATCH:(b + 1) * BATCH] for b in range(batches + 1)]
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    for images, labels in iterator:
        if device.type == "cuda":
            images.to(device, non_blocking=True)
            labels.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batches * BATCH / (time.perf_counter() - started)


def main() -> None:
    cpus = available_cpus()
    default_workers = ",".join(str(w) for w in range(0, min(cpus, MAX_AUTO_WORKERS) + 1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default=default_workers,
                        help=f"worker counts to measure (default 0..{min(cpus, 16)})")
    parser.add_argument("--batches", type=int, default=6, help="timed batches of 24 per count")
    parser.add_argument("--images", type=int, default=96, help="images in the fixture")
    parser.add_argument("--fixture", type=Path, default=None,
                        help="fixture folder (default $CSS_BENCH_CACHE or ~/.cache/css-bench)")
    args = parser.parse_args()
    base = Path(os.environ.get("CSS_BENCH_CACHE") or Path.home() / ".cache" / "css-bench")
    root = fixture(args.fixture or base / f"loader-fixture-{WIDTH}x{HEIGHT}", args.images)
    samples = VocLayout().samples(root, "train")[: args.images]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    copy = (f"yes, to {torch.cuda.get_device_name(device)}" if device.type == "cuda"
            else "no (no GPU)")
    print(f"fixture: {len(samples)} VOC-layout {WIDTH}x{HEIGHT} JPEGs + PNG labels at {root}; "
          f"{cpus} CPU(s) available to this process; torch {torch.__version__}; "
          f"host-to-device copy: {copy}")
    print("JPEG decoding:")
    decoders(samples)
    print(f"previous data path (PIL + v2 transforms on PIL, in-process): "
          f"{previous_path(samples, 2 * BATCH):.0f} images/s")
    dataset = StepDataset(samples, np.arange(256, dtype=np.uint8), TrainTransform(CROP))
    print(f"training loader, batches of {BATCH} at {CROP} px, {args.batches} timed batches "
          "per worker count:")
    print(f"  {'workers':>7} {'images/s':>9} {'per worker':>11} {'vs 1 worker':>12}")
    single = None
    for workers in (int(w) for w in args.workers.split(",")):
        rate = images_per_second(dataset, workers, args.batches, device)
        if workers == 1:
            single = rate
        per = f"{rate / workers:.0f}" if workers else "-"
        scaling = f"{rate / single:.2f}x" if single and workers else "-"
        print(f"  {workers:>7} {rate:>9.0f} {per:>11} {scaling:>12}", flush=True)


if __name__ == "__main__":
    main()
