"""Where a run's data comes from: a real dataset root, or an embedded synthetic dataset.

`--dataset voc --data-root PATH` (or `CSS_BENCH_VOC_ROOT` / `CSS_BENCH_ADE_ROOT`) reads a real
layout; `--dataset synth-voc|synth-ade`, or nothing at all, uses the embedded synthetic dataset,
generated on first use in the same layout and read by the same code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.data.layouts import LAYOUTS, Sample
from bench.data.split_index import SplitIndex
from bench.errors import BenchError
from protocols.classes import CLASS_NAMES

REAL_DATASETS = ("voc", "ade")
SYNTH_DATASETS = ("synth-voc", "synth-ade")
ROOT_VARIABLES = {"voc": "CSS_BENCH_VOC_ROOT", "ade": "CSS_BENCH_ADE_ROOT"}


@dataclass(frozen=True)
class DataSource:
    name: str
    kind: str
    root: Path
    synthetic: bool

    @property
    def num_labels(self) -> int:
        return len(CLASS_NAMES[self.kind])

    def samples(self, split: str) -> list[Sample]:
        return LAYOUTS[self.kind].samples(self.root, split)

    def problems(self) -> list[str]:
        return LAYOUTS[self.kind].problems(self.root)

    def index(self, log: Callable[[str], None] = print,
              cache_dir: Path | None = None) -> SplitIndex:
        return SplitIndex(self.root, self.samples, self.num_labels, cache_dir=cache_dir, log=log,
                          synthetic=self.synthetic)

    def describe(self) -> str:
        what = "embedded synthetic dataset" if self.synthetic else "dataset"
        return f"{what} {self.name} at {self.root}"


def resolve_source(dataset: str | None = None, data_root: str | Path | None = None,
                   protocol_dataset: str | None = None, synth_options: dict | None = None,
                   check: bool = True) -> DataSource:
    """The data a command uses; BenchError names what is missing and how to provide it."""
    if dataset is None:
        if data_root is not None:
            dataset = protocol_dataset or "voc"
        elif protocol_dataset and os.environ.get(ROOT_VARIABLES[protocol_dataset]):
            dataset = protocol_dataset
        else:
            dataset = f"synth-{protocol_dataset or 'voc'}"
    valid = REAL_DATASETS + SYNTH_DATASETS
    if dataset not in valid:
        raise BenchError(f"unknown dataset {dataset!r}; choose one of {', '.join(valid)}")
    kind = dataset.removeprefix("synth-")
    if protocol_dataset is not None and kind != protocol_dataset:
        raise BenchError(f"the protocol is a {protocol_dataset.upper()} protocol but the dataset "
                         f"{dataset!r} is {kind.upper()}; use a {kind}-* protocol or "
                         f"--dataset {protocol_dataset} / synth-{protocol_dataset}")
    if dataset in SYNTH_DATASETS:
        if data_root is not None:
            raise BenchError(f"--data-root does not apply to the embedded dataset {dataset}; "
                             "set CSS_BENCH_CACHE to choose where it is generated")
        from bench.data.synth import ensure_synth

        root = ensure_synth(dataset, **(synth_options or {}))
        return DataSource(dataset, kind, root, synthetic=True)
    if data_root is None:
        data_root = os.environ.get(ROOT_VARIABLES[kind])
    if not data_root:
        raise BenchError(f"no data root for {dataset}: pass --data-root PATH or set "
                         f"{ROOT_VARIABLES[kind]} (or use --dataset synth-{kind})")
    source = DataSource(dataset, kind, Path(data_root).expanduser(), synthetic=False)
    if check:
        problems = source.problems()
        if problems:
            raise BenchError(f"the {dataset} layout at {data_root} is incomplete:\n  - "
                             + "\n  - ".join(problems))
    return source


class DataNames(Protocol):
    """What `source_of` needs of a run's data spec (bench.spec.DataSpec)."""

    dataset: str
    synth: tuple[tuple[str, int], ...]
    root: str | None


def source_of(data: DataNames) -> DataSource:
    """The source of a resolved run's data: the embedded dataset (generated on first use) or the
    real root (the spec's, else CSS_BENCH_<VOC|ADE>_ROOT)."""
    kind = data.dataset.removeprefix("synth-")
    if data.dataset in SYNTH_DATASETS:
        return resolve_source(data.dataset, None, kind, synth_options=dict(data.synth))
    return resolve_source(data.dataset, data.root, kind)
