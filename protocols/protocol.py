"""A protocol: a class-incremental setting (which classes each step adds) crossed with a mode.

Classes are raw dataset label values (VOC 0..20, ADE 0..150). The model's output channel of a
class is its position in `class_order`; with the datasets' own orders that is the identity, with a
permuted order (`@order=N`) labels are remapped so that every step's classes take the next
contiguous channels, as the reference code of this field does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from protocols.classes import CLASS_NAMES

MODES: tuple[str, ...] = ("overlap", "disjoint", "sequential", "partition")
# `partition`: each training image in exactly one step, the steps' image lists read from
# reference files (MiB's data/ade/<task>/train-<step>.npy, imported by `bench data
# import-splits`); labels as in overlap (only the step's classes kept, the rest background).
EVAL_CROPS: tuple[str, ...] = ("center", "full")


@dataclass(frozen=True)
class Protocol:
    """A frozen value describing what is learned when, and how it is evaluated.

    The evaluation knobs are the ones that silently differ between papers; they are printed with
    every result (see `knobs`).
    """

    name: str
    dataset: str
    setting: str
    mode: str
    class_order: tuple[int, ...]
    step_sizes: tuple[int, ...]
    order_seed: int | None = None
    # VOC's 255 border is trained as background in overlap/disjoint (the reference code does so).
    void_as_background: bool = True
    # ADE's label 0 ("other") is background in training and ignored at test.
    background_ignored_at_test: bool = False
    # Metric convention: background counted in old and all (SDR paper) or not (MiB paper).
    background_in_old_all: bool = True
    # Evaluation on a centre crop of `crop` pixels (the field's convention) or on full images.
    eval_crop: str = "center"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.eval_crop not in EVAL_CROPS:
            raise ValueError(f"eval_crop {self.eval_crop!r} is not one of {EVAL_CROPS}")
        if sum(self.step_sizes) != len(self.class_order):
            raise ValueError(f"{self.name}: step sizes {self.step_sizes} do not cover the classes")
        if sorted(self.class_order) != list(range(self.num_labels)):
            raise ValueError(f"{self.name}: class order is not a permutation of the labels")
        if self.class_order[0] != 0:
            raise ValueError(f"{self.name}: background must be learned first")

    @property
    def num_labels(self) -> int:
        return len(CLASS_NAMES[self.dataset])

    @property
    def num_steps(self) -> int:
        return len(self.step_sizes)

    @cached_property
    def _step_bounds(self) -> tuple[tuple[int, int], ...]:
        bounds, start = [], 0
        for size in self.step_sizes:
            bounds.append((start, start + size))
            start += size
        return tuple(bounds)

    def _check_step(self, step: int) -> None:
        if not 0 <= step < self.num_steps:
            raise IndexError(f"{self.name} has steps 0..{self.num_steps - 1}, not {step}")

    def step_classes(self, step: int) -> tuple[int, ...]:
        """Labels introduced at `step`; step 0 includes background."""
        self._check_step(step)
        start, end = self._step_bounds[step]
        return self.class_order[start:end]

    def new_classes(self, step: int) -> tuple[int, ...]:
        """Labels introduced at `step`, background excluded."""
        return tuple(c for c in self.step_classes(step) if c != 0)

    def old_classes(self, step: int) -> tuple[int, ...]:
        """Labels of the steps before `step` (background included from step 1 on)."""
        self._check_step(step)
        return self.class_order[: self._step_bounds[step][0]]

    def seen_classes(self, step: int) -> tuple[int, ...]:
        """Labels learned up to and including `step` (background included)."""
        self._check_step(step)
        return self.class_order[: self._step_bounds[step][1]]

    def future_classes(self, step: int) -> tuple[int, ...]:
        self._check_step(step)
        return self.class_order[self._step_bounds[step][1] :]

    def channel(self, label: int) -> int:
        """The model's output channel of a raw label."""
        return self._channels[label]

    @cached_property
    def _channels(self) -> dict[int, int]:
        return {label: index for index, label in enumerate(self.class_order)}

    def channels_of(self, step: int) -> range:
        """Output channels added at `step` (contiguous by construction)."""
        self._check_step(step)
        return range(*self._step_bounds[step])

    def class_name(self, label: int) -> str:
        return CLASS_NAMES[self.dataset][label]

    def knobs(self) -> dict[str, object]:
        """What silently differs between papers: printed and stored with every result."""
        return {
            "mode": self.mode,
            "void_as_background": self.void_as_background,
            "background_ignored_at_test": self.background_ignored_at_test,
            "background_in_old_all": self.background_in_old_all,
            "eval_crop": self.eval_crop,
            "order_seed": self.order_seed,
        }

    def with_knobs(self, **changes: object) -> Protocol:
        unknown = set(changes) - {"background_in_old_all", "eval_crop", "void_as_background"}
        if unknown:
            raise ValueError(f"not a protocol knob: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def describe_steps(self) -> list[str]:
        """One line per step: the classes it adds, as label ranges with names for short steps."""
        lines = []
        for step in range(self.num_steps):
            labels = self.step_classes(step)
            text = format_ranges(labels)
            if len(labels) <= 3:
                text += " (" + ", ".join(self.class_name(c) for c in labels) + ")"
            lines.append(f"step {step}: {text}")
        return lines

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "setting": self.setting,
            "class_order": list(self.class_order),
            "step_sizes": list(self.step_sizes),
            **self.knobs(),
        }


def format_ranges(labels: tuple[int, ...] | list[int]) -> str:
    """`(0, 1, 2, 3, 7, 9, 10)` -> `0-3, 7, 9-10`, keeping the given order."""
    parts: list[str] = []
    run: list[int] = []
    for label in labels:
        if run and label == run[-1] + 1:
            run.append(label)
            continue
        if run:
            parts.append(_range_text(run))
        run = [label]
    if run:
        parts.append(_range_text(run))
    return ", ".join(parts)


def _range_text(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
