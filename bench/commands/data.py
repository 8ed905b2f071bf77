"""`bench data check --dataset NAME [--data-root PATH] [--deep]`: validate a layout, every image
and label file (header and end; every pixel with --deep) and the label values.

`bench data import-splits --dataset ade|voc --root PATH --from RELEASE_DATA`: import the
reference releases' per-step training lists (MiB's / SDR's
`data/<dataset>/<task>/train-<step>.npy`), validated against the dataset, as this project's plain
split files (bench.data.reference_splits).
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.data.sources import REAL_DATASETS, SYNTH_DATASETS, resolve_source
from bench.errors import BenchError
from protocols.classes import CLASS_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check a dataset layout")
    actions = parser.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a dataset root and every label file")
    check.add_argument("--dataset", required=True, choices=REAL_DATASETS + SYNTH_DATASETS)
    check.add_argument("--data-root", "--root", dest="data_root", default=None)
    check.add_argument("--deep", action="store_true",
                       help="decode every image and label file completely (slower)")
    check.set_defaults(handler=run_check)
    splits = actions.add_parser(
        "import-splits", help="import MiB's / SDR's per-step training lists (data/<dataset>/"
                              "<task>/train-<step>.npy): ADE partitions, VOC reference sets")
    splits.add_argument("--dataset", required=True, choices=REAL_DATASETS + SYNTH_DATASETS)
    splits.add_argument("--data-root", "--root", dest="data_root", default=None)
    splits.add_argument("--from", dest="source", required=True,
                        help="a release's data/ folder (or data/<dataset>/, or the release root)")
    splits.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.data.reference_splits import import_reference

    source = resolve_source(args.dataset, args.data_root)
    written = import_reference(source.index(), Path(args.source).expanduser(), source.kind)
    print(f"ok: {len(written)} split files written for {source.describe()}; the protocols above "
          "now train on these lists")
    return 0


def run_check(args: argparse.Namespace) -> int:
    source = resolve_source(args.dataset, args.data_root, check=False)
    print(f"checking {source.describe()}")
    problems = source.problems()
    if problems:
        raise BenchError(f"the {source.name} layout at {source.root} is incomplete:\n  - "
                         + "\n  - ".join(problems))
    from bench.data.integrity import bad_files

    bad, checked = [], 0
    how = "decoded completely" if args.deep else "headers and ends read"
    for split in ("train", "val"):
        samples = source.samples(split)
        checked += 2 * len(samples)
        for found in bad_files(samples, deep=args.deep):
            print(f"  bad: {found}")
            bad.append(found)
    if bad:
        raise BenchError(f"{len(bad)} problem(s) in the {checked} image and label files of "
                         f"{source.name} at {source.root} (listed above); replace each file "
                         "with a good copy")
    print(f"{checked} image and label files readable ({how})"
          + ("" if args.deep else "; --deep decodes every pixel"))
    index = source.index()
    names = CLASS_NAMES[source.kind]
    for split in ("train", "val"):
        samples, presence, _ = index.presence(split)
        per_class = presence[:, : len(names)].sum(axis=0)
        absent = [names[c] for c in np.flatnonzero(per_class == 0)]
        print(f"{split}: {len(samples)} images, label files valid, "
              f"{int(presence[:, -1].sum())} with void (255); images per class: "
              f"min {int(per_class[1:].min())}, median {int(np.median(per_class[1:]))}, "
              f"max {int(per_class[1:].max())}")
        if absent:
            print(f"  classes with no {split} image: {', '.join(absent)}")
    print(f"ok: {source.name} at {source.root} is complete")
    return 0
