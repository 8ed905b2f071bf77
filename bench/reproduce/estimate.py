"""How many device-hours a reproduction will take, before anything is submitted.

Each piece of work (a step-0 job; a run's steps >= 1 that are not done yet) is estimated from,
in order:

1. the cost of finished runs of the same configuration (same setup hash: the run's identity
   without the seed) found in the runs root: their mean step-0 or steps >= 1 device-hours
   (`bench.report.cost`), scaled to the steps still to do;
2. otherwise the recipe and the measured step time of the GPU benchmark
   (`benchmarks/gpu_step.py --save`, read from `results/speed/gpu_step.json`) when it has figures
   for the device and the run's model (backbone, widths, output stride) and crop: per step,
   epochs x iterations (training images of the step // batch) x ms per iteration at that batch
   (the nearest measured batch scaled per image otherwise), plus the test images x the measured
   evaluation ms per image;
3. otherwise it is unknown, and said to be.

device-hours = wall hours x devices, as the records count them; the GPU figures are one device's,
so they assume the work scales perfectly over the devices of a job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.spec import RunSpec
from bench.sweep.plan import PlannedRun, Step0Job

FIGURES_PATH = Path(__file__).resolve().parents[2] / "results" / "speed" / "gpu_step.json"


@dataclass
class Estimate:
    hours: float = 0.0  # the known part
    by_source: dict[str, int] = field(default_factory=dict)  # source -> pieces of work
    unknown: list[str] = field(default_factory=list)  # what could not be estimated
    device: str | None = None  # the device of the GPU figures used, if any

    def add(self, hours: float | None, source: str, what: str) -> None:
        if hours is None:
            self.unknown.append(what)
            return
        self.hours += hours
        self.by_source[source] = self.by_source.get(source, 0) + 1

    def text(self) -> str:
        from bench.report.cost import hours as shown

        parts = [f"{count} from {source}" for source, count in self.by_source.items()]
        if self.unknown:
            parts.append(f"unknown for {len(self.unknown)} ({', '.join(self.unknown[:3])}"
                         + (", ..." if len(self.unknown) > 3 else "") + ")")
        if not self.by_source:
            if not self.unknown:
                return "estimated cost: 0 device-hours (nothing to run)"
            return ("estimated cost: unknown (no finished run of the same configuration in the "
                    "runs root and no GPU benchmark figures for the device and model; measure "
                    "them with benchmarks/gpu_step.py --save)")
        total = shown(self.hours) + (" or more" if self.unknown else "")
        return f"estimated cost: {total} device-hours ({'; '.join(parts)})"


# ----- GPU benchmark figures --------------------------------------------------------------------
def load_figures(path: Path | str = FIGURES_PATH) -> dict[str, Any]:
    """The saved figures of benchmarks/gpu_step.py (an empty set when none were saved)."""
    path = Path(path)
    if not path.is_file():
        return {"devices": {}}
    try:
        figures = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(f"GPU benchmark figures {path} are unreadable ({error}); measure them "
                         "again with benchmarks/gpu_step.py --save") from None
    figures.setdefault("devices", {})
    return figures


def pick_device(figures: dict[str, Any], wanted: str | None) -> str | None:
    """The measured device named (by substring), or the only one measured; None if none."""
    devices = list(figures["devices"])
    if wanted:
        found = [d for d in devices if wanted.lower() in d.lower()]
        if not found:
            raise BenchError(f"no GPU benchmark figures for {wanted!r} (measured: "
                             f"{', '.join(devices) or 'none'}); run benchmarks/gpu_step.py "
                             "--save on that GPU, or leave --gpu out")
        return found[0]
    return devices[0] if len(devices) == 1 else None


def _config_name(spec: RunSpec, step: int) -> str:
    recipe = spec.recipes[step]
    if not recipe.bf16:
        return "fp32"
    name = "bf16" if spec.execution.channels_last is False else "bf16+cl"
    return name + ("+compile" if spec.execution.compile and name == "bf16+cl" else "")


def _ms(entries: list[dict[str, Any]], kind: str, config: str, batch: int) -> tuple[float, float]:
    """(ms per iteration at `batch`, evaluation ms per image), the nearest batch scaled."""
    matching = [e for e in entries if e["step"] == kind and e["config"] == config] or \
        [e for e in entries if e["step"] == kind and e["config"] == "fp32"]
    if not matching:
        raise KeyError(kind)
    best = min(matching, key=lambda e: abs(int(e["batch"]) - batch))
    per_iteration = float(best["ms_per_iteration"]) * batch / int(best["batch"])
    return per_iteration, float(best["eval_ms_per_image"])


def figures_hours(spec: RunSpec, steps: Sequence[int], device: dict[str, Any],
                  counts: dict[int, tuple[int, int]]) -> float | None:
    """Device-hours of `steps` of `spec` from one device's figures (None: they do not apply to
    this model or crop). `counts[step]` = (training images, test images)."""
    model = dict(device.get("model", {}))
    crop = int(model.pop("crop", -1))
    if not model or any(getattr(spec.model, key, None) != value for key, value in model.items()) \
            or any(crop != spec.recipes[s].crop for s in steps):
        return None
    seconds = 0.0
    for step in steps:
        recipe = spec.recipes[step]
        train, test = counts[step]
        try:
            per_iteration, per_image = _ms(device["figures"], "step 0" if step == 0 else
                                           "step 1", _config_name(spec, step),
                                           recipe.batch_size)
        except KeyError:
            return None
        iterations = 1 if 0 < train < recipe.batch_size else train // recipe.batch_size
        seconds += (recipe.epochs * iterations * per_iteration + test * per_image) / 1000
    return seconds / 3600


def _image_counts(spec: RunSpec) -> dict[int, tuple[int, int]]:
    from bench.data.sources import source_of

    index = source_of(spec.data).index(log=lambda _: None)
    protocol = spec.planned_protocol
    return {step: (len(index.select(protocol, step, "train")),
                   len(index.select(protocol, step, "val"))) for step in range(spec.num_steps)}


# ----- the estimate ---------------------------------------------------------------------------
def _mean(frame: pd.DataFrame, column: str) -> float | None:
    values = frame[column].dropna() if len(frame) else frame.get(column, pd.Series(dtype=float))
    return float(values.mean()) if len(values) else None


def estimate(todo: Sequence[PlannedRun], step0_jobs: Sequence[Step0Job],
             finished: pd.DataFrame, figures: dict[str, Any], device: str | None) -> Estimate:
    """The estimate of the step-0 jobs and the runs to submit. `finished`: `run_costs` of the
    runs found in the runs root (any status; only complete ones are used)."""
    result = Estimate(device=device)
    complete = finished[finished["status"] == "complete"] if len(finished) else finished
    measured = figures["devices"].get(device) if device else None
    gpu_source = f"benchmarks/gpu_step.py's figures for {device}"
    counts: dict[str, dict[int, tuple[int, int]]] = {}

    def from_figures(spec: RunSpec, steps: list[int]) -> float | None:
        if measured is None or not steps:
            return None if steps else 0.0
        if spec.run_hash not in counts:
            counts[spec.run_hash] = _image_counts(spec)
        return figures_hours(spec, steps, measured, counts[spec.run_hash])

    for job in step0_jobs:
        same = complete[complete["setup_hash"] == job.spec.setup_hash] if len(complete) else \
            complete
        hours = _mean(same, "step0_device_hours") if len(same) else None
        if hours is not None and not math.isnan(hours):
            result.add(hours, "the cost of finished runs", f"step 0 of {job.spec.label}")
            continue
        result.add(from_figures(job.spec, [0]), gpu_source, f"step 0 of {job.spec.label}")
    for run in todo:
        spec = run.spec
        remaining = [s for s in range(max(run.done_steps, 1), spec.num_steps)]
        same = complete[complete["setup_hash"] == spec.setup_hash] if len(complete) else complete
        hours = _mean(same, "incremental_device_hours") if len(same) else None
        if hours is not None and not math.isnan(hours):
            share = len(remaining) / max(spec.num_steps - 1, 1)
            result.add(hours * share, "the cost of finished runs", spec.label)
            continue
        result.add(from_figures(spec, remaining), gpu_source, spec.label)
    return result
