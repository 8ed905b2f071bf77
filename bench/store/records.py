"""A step's record: everything the aggregator needs, computed from the confusion matrix.

Old / new / all follow the papers' tables: "old" are the base classes (step 0, e.g. 0-15 of 15-1),
"new" every class added since, "all" every class seen. The record also keeps the per-step view
(classes of this step vs the ones before) and the per-class IoU, so any grouping can be derived,
and the run's resolved spec, so a record says exactly what produced it. No absolute path of this
machine is stored (the data set by name and content digest, the step-0 cache relative to the
runs root), so committed records are the same on any machine.
"""

from __future__ import annotations

import math
import platform
from importlib import metadata
from typing import Any

import torch

from bench.metrics import step_scores
from protocols.protocol import Protocol, format_ranges

RECORD_FORMAT = 2


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("css-bench", "torch", "torchvision", "numpy", "hydra-core"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def score_groups(matrix: torch.Tensor, protocol: Protocol, step: int,
                 background_in_old_all: bool) -> dict[str, Any]:
    base = list(protocol.channels_of(0))
    added = [c for s in range(1, step + 1) for c in protocol.channels_of(s)]
    paper = step_scores(matrix, base, added, background_in_old_all)
    previous = list(range(len(protocol.old_classes(step)))) if step else [0]
    this_step = [c for c in protocol.channels_of(step) if c != 0]
    if step == 0:
        per_step = step_scores(matrix, [], this_step, background_in_old_all)
    else:
        per_step = step_scores(matrix, previous, this_step, background_in_old_all)
    return {
        "old": _number(paper.old),
        "new": _number(paper.new),
        "all": _number(paper.all),
        "hiou": _number(paper.hiou),
        "step_old": _number(per_step.old) if step else None,
        "step_new": _number(per_step.new),
        "background_in_old_all": background_in_old_all,
        "old_classes": format_ranges(list(protocol.class_order[: len(base)])),
        "new_classes": format_ranges([protocol.class_order[c] for c in added]) or None,
        "per_class": {
            str(protocol.class_order[channel]): _number(value)
            for channel, value in enumerate(paper.per_class)
        },
    }


def step_cost(*, train_seconds: float, eval_seconds: float, device: dict[str, Any],
              train_images: int, peak_memory: dict[str, Any]) -> dict[str, Any]:
    """What training and evaluating a step cost on this machine (a record's `cost`).

    device_hours = (train + eval seconds) x device count / 3600: GPU-hours on GPUs. The rates
    are computed from the stored (rounded) seconds, so a record agrees with itself."""
    train_seconds, eval_seconds = round(train_seconds, 3), round(eval_seconds, 3)
    seconds = train_seconds + eval_seconds
    return {
        "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "device": device, "device_hours": round(seconds * int(device["count"]) / 3600, 6),
        "train_images": int(train_images),
        "images_per_second": (round(train_images / train_seconds, 2) if train_seconds > 0
                              else None),
        "peak_memory_bytes": peak_memory.get("bytes"), "peak_memory": peak_memory.get("what"),
        "paid_by": None,
    }


def reused_cost(*, device: dict[str, Any], entry: str, entry_cost: dict[str, Any] | None
                ) -> dict[str, Any]:
    """The cost of a step 0 taken from the shared cache: nothing here; `paid_by` names the
    cache entry (relative to the runs root) and what training it cost when it was trained."""
    paid = entry_cost or {}
    return {
        "train_seconds": 0.0, "eval_seconds": 0.0, "device": device, "device_hours": 0.0,
        "train_images": 0, "images_per_second": None, "peak_memory_bytes": None,
        "peak_memory": "nothing trained here", "paid_by": {
            "step0_cache": entry, "device_hours": paid.get("device_hours"),
            "device": paid.get("device"), "train_seconds": paid.get("train_seconds"),
            "eval_seconds": paid.get("eval_seconds"),
            "note": "reused from the shared step-0 cache: its cost was paid once, by the run "
                    "that trained it" + ("" if entry_cost else " (a cache entry written before "
                                         "costs were recorded: not known)")},
    }


def step_record(*, spec: dict[str, Any], protocol: Protocol, requested: Protocol, method: str,
                seed: int, step: int, matrix: torch.Tensor, history: list[dict[str, float]],
                timings: dict[str, float], data: dict[str, Any],
                step0: dict[str, Any] | None,
                cost: dict[str, Any] | None = None) -> dict[str, Any]:
    """`protocol` is the plan the method trains, `requested` the protocol asked for; when they
    differ (joint training: one step) the scores are grouped as after the requested last step."""
    if requested != protocol:
        scores = score_groups(matrix, requested, requested.num_steps - 1,
                              protocol.background_in_old_all)
        described = {**requested.to_dict(), "trained_as": protocol.to_dict()}
    else:
        scores = score_groups(matrix, protocol, step, protocol.background_in_old_all)
        described = protocol.to_dict()
    return {
        "format": RECORD_FORMAT,
        "protocol": described,
        "method": method,
        "seed": seed,
        "run_hash": spec["hash"],
        "step": step,
        "num_steps": protocol.num_steps,
        "classes_added": format_ranges(protocol.step_classes(step)),
        "class_names": {str(c): protocol.class_name(c) for c in protocol.seen_classes(step)},
        "scores": scores,
        "confusion_matrix": matrix.cpu().tolist(),
        "loss_history": history,
        "spec": spec,
        "data": data,
        "step0_cache": step0,
        "versions": package_versions(),
        "timings": timings,
        "cost": cost,
    }


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what legitimately differs between identical runs: times and costs,
    whether step 0 was reused, the package versions."""
    kept = {k: v for k, v in record.items()
            if k not in ("timings", "cost", "step0_cache", "versions")}
    if record.get("step0_cache"):
        kept["step0_key"] = record["step0_cache"].get("key")
    return kept
