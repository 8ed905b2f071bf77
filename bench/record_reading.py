"""One record file -> the fields the aggregator uses, checked, or the reason it cannot be used.

Format 1 is today's (`bench.store.RECORD_FORMAT`). A record without a format number predates
versioned records and is read when it holds what is needed (a protocol, method, seed, step and
either a confusion matrix or per-class IoU); a newer format is refused rather than guessed at.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.metrics import per_class_iou
from bench.store import RECORD_FORMAT

REAL_DATASETS = ("voc", "ade")


class RecordError(Exception):
    """Why one record cannot be read; collected with its path, never raised to the user alone."""


def _protocol_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The protocol dict of a record; a bare name (older records) is resolved by the registry."""
    from protocols import get_protocol

    protocol = raw.get("protocol")
    if isinstance(protocol, str):
        try:
            return get_protocol(protocol).to_dict()
        except BenchError:
            raise RecordError(f"unknown protocol {protocol!r}") from None
    if not isinstance(protocol, dict) or "name" not in protocol:
        raise RecordError("no protocol (expected a dict with name, class_order, step_sizes)")
    if "class_order" not in protocol or "step_sizes" not in protocol:
        try:
            known = get_protocol(str(protocol["name"])).to_dict()
        except BenchError:
            raise RecordError(f"protocol {protocol['name']!r} has no class_order/step_sizes "
                              "and is not a known protocol") from None
        protocol = {**known, **protocol}
    sizes = protocol["step_sizes"]
    if not sizes or sum(sizes) != len(protocol["class_order"]):
        raise RecordError(f"step_sizes {sizes} do not cover class_order")
    return protocol


def _iou_of(raw: dict[str, Any], protocol: dict[str, Any]) -> tuple[torch.Tensor,
                                                                     torch.Tensor | None]:
    order = protocol["class_order"]
    matrix = raw.get("confusion_matrix")
    if matrix is not None:
        try:
            tensor = torch.tensor(matrix, dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError):
            raise RecordError("confusion_matrix is not a matrix of integers") from None
        if tensor.dim() != 2 or tensor.shape[0] != tensor.shape[1] or tensor.shape[0] > len(order):
            raise RecordError(f"confusion_matrix of shape {tuple(tensor.shape)} does not fit the "
                              f"protocol's {len(order)} classes")
        return per_class_iou(tensor), tensor
    per_class = (raw.get("scores") or {}).get("per_class")
    if not isinstance(per_class, dict):
        raise RecordError("neither a confusion_matrix nor scores.per_class")
    values = []
    for label in order:
        if str(label) not in per_class:
            break  # classes not seen yet are absent
        value = per_class[str(label)]
        values.append(math.nan if value is None else float(value) / 100.0)
    if not values:
        raise RecordError("scores.per_class names none of the protocol's classes")
    return torch.tensor(values, dtype=torch.float64), None


def parse_record(raw: Any) -> dict[str, Any]:
    """A record's fields the aggregator uses, checked; RecordError says why it cannot be used.

    Format 1 is today's; a record without a format number predates versioned records and is
    read when it holds what is needed; a newer format is refused rather than guessed at.
    """
    if not isinstance(raw, dict):
        raise RecordError("not a JSON object")
    record_format = raw.get("format")
    if record_format is not None:
        if isinstance(record_format, bool) or not isinstance(record_format, int):
            raise RecordError(f"format {record_format!r} is not a record format number")
        if record_format > RECORD_FORMAT:
            raise RecordError(f"format {record_format} is newer than this css-bench reads "
                              f"(up to {RECORD_FORMAT}); upgrade css-bench")
        if record_format < 1:
            raise RecordError(f"format {record_format} is unknown")
    for key in ("method", "seed", "step"):
        if key not in raw:
            raise RecordError(f"missing field {key!r}")
    protocol = _protocol_of(raw)
    iou, matrix = _iou_of(raw, protocol)
    planned = raw.get("protocol", {}).get("trained_as") if isinstance(raw.get("protocol"),
                                                                       dict) else None
    if "num_steps" in raw:
        num_steps = int(raw["num_steps"])
    elif planned:
        num_steps = len(planned["step_sizes"])
    else:
        num_steps = len(protocol["step_sizes"])
    step = int(raw["step"])
    # A plan with fewer steps than the protocol (joint) is scored as after the protocol's last.
    eval_step = len(protocol["step_sizes"]) - 1 if planned else step
    if not 0 <= step < num_steps:
        raise RecordError(f"step {step} outside 0..{num_steps - 1}")
    config = raw.get("config") if isinstance(raw.get("config"), dict) else None
    return {
        "format": record_format, "protocol": protocol, "method": str(raw["method"]),
        "seed": int(raw["seed"]), "step": step, "eval_step": eval_step, "num_steps": num_steps,
        "config": config, "config_hash": str(raw.get("config_hash") or "unknown"),
        "data": raw.get("data") if isinstance(raw.get("data"), dict) else {},
        "class_names": raw.get("class_names") or {}, "iou": iou, "matrix": matrix,
    }


def data_origin(data: dict[str, Any]) -> tuple[str, str]:
    """(data set name, kind) from a record's `data` field: kind is real, synthetic or unknown.

    Only a record naming a real dataset outside the synthetic cache counts as real, so a run on
    the embedded synthetic data can never land in a real-data column.
    """
    name = data.get("dataset")
    root = data.get("root")
    under_synth_cache = bool(root) and any(part.startswith("synth-")
                                           for part in Path(str(root)).parts)
    if (isinstance(name, str) and name.startswith("synth-")) or under_synth_cache:
        return str(name or "synth"), "synthetic"
    if name in REAL_DATASETS:
        return str(name), "real"
    return str(name or "unknown"), "unknown"
