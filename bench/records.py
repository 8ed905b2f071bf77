"""A step's record: everything the aggregator needs, computed from the confusion matrix.

Old / new / all follow the papers' tables: "old" are the base classes (step 0, e.g. 0-15 of 15-1),
"new" every class added since, "all" every class seen. The record also keeps the per-step view
(classes of this step vs the ones before) and the per-class IoU, so any grouping can be derived.
"""

from __future__ import annotations

import math
import platform
from importlib import metadata
from typing import Any

import torch

from bench.metrics import step_scores
from bench.store import RECORD_FORMAT
from protocols.protocol import Protocol, format_ranges


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


def step_record(*, protocol: Protocol, step: int, matrix: torch.Tensor, method: str, seed: int,
                config: dict[str, Any], config_hash: str, history: list[dict[str, float]],
                timings: dict[str, float], data: dict[str, Any],
                step0: dict[str, Any] | None, requested: Protocol | None = None) -> dict[str, Any]:
    """`requested` is the protocol the user asked for when the method trains another plan of it
    (joint training: one step); scores are then grouped as after the requested last step."""
    if requested is not None and requested != protocol:
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
        "step": step,
        "num_steps": protocol.num_steps,
        "classes_added": format_ranges(protocol.step_classes(step)),
        "class_names": {str(c): protocol.class_name(c) for c in protocol.seen_classes(step)},
        "scores": scores,
        "confusion_matrix": matrix.cpu().tolist(),
        "loss_history": history,
        "config": config,
        "config_hash": config_hash,
        "data": data,
        "step0_cache": step0,
        "versions": package_versions(),
        "timings": timings,
    }


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what legitimately differs between identical runs: times, whether step 0
    was reused, where the data and runs live."""
    from bench.config import identity

    kept = {k: v for k, v in record.items() if k not in ("timings", "step0_cache", "data")}
    kept["config"] = identity(record["config"])
    if record.get("step0_cache"):
        kept["step0_key"] = record["step0_cache"].get("key")
    return kept
