"""One record file -> the fields the aggregator uses, checked, or the reason it cannot be used.

Format 2 is today's (`bench.store.records.RECORD_FORMAT`): it holds the run's resolved spec.
Format 1 records (css-bench before run specs) are read for their scores but carry no spec, so
the aggregator labels their runs stale; a newer format is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.metrics import per_class_iou
from bench.store.records import RECORD_FORMAT

REAL_DATASETS = ("voc", "ade")


class RecordError(Exception):
    """Why one record cannot be read; collected with its path, never raised to the user alone."""


def _protocol_of(raw: dict[str, Any]) -> dict[str, Any]:
    protocol = raw.get("protocol")
    if not isinstance(protocol, dict) or not {"name", "class_order", "step_sizes"} <= set(
            protocol):
        raise RecordError("no protocol (expected a dict with name, class_order, step_sizes)")
    sizes = protocol["step_sizes"]
    if not sizes or sum(sizes) != len(protocol["class_order"]):
        raise RecordError(f"step_sizes {sizes} do not cover class_order")
    return protocol


def _matrix_of(raw: dict[str, Any], protocol: dict[str, Any]) -> torch.Tensor:
    matrix = raw.get("confusion_matrix")
    if matrix is None:
        raise RecordError("no confusion_matrix")
    try:
        tensor = torch.tensor(matrix, dtype=torch.int64)
    except (TypeError, ValueError, RuntimeError):
        raise RecordError("confusion_matrix is not a matrix of integers") from None
    order = protocol["class_order"]
    if tensor.dim() != 2 or tensor.shape[0] != tensor.shape[1] or tensor.shape[0] > len(order):
        raise RecordError(f"confusion_matrix of shape {tuple(tensor.shape)} does not fit the "
                          f"protocol's {len(order)} classes")
    return tensor


def _spec_fields(raw: dict[str, Any], record_format: int) -> dict[str, Any]:
    """Run hash, setup hash, recipe, hyperparameters and the stored spec (None in format 1)."""
    if record_format == 1:
        config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
        run_hash = str(raw.get("config_hash") or "unknown")
        return {"spec": None, "run_hash": run_hash, "setup_hash": f"v1-{run_hash}",
                "recipe": str((config.get("trainer") or {}).get("name") or "unknown"),
                "params": dict(config.get("method_params") or {}), "precision": "fp32"}
    spec = raw.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("identity"), dict):
        raise RecordError("no spec (expected the run's resolved spec with its identity)")
    identity = spec["identity"]
    recipe = identity.get("recipe") or {}
    steps = recipe.get("steps") or [{}]
    return {"spec": spec, "run_hash": str(spec.get("hash")),
            "setup_hash": str(spec.get("setup_hash")),
            "recipe": str(recipe.get("name") or "unknown"),
            "params": dict((identity.get("method") or {}).get("params") or {}),
            "precision": str(steps[0].get("precision", "fp32"))}


def _loss_history(raw: Any) -> list[dict[str, float]]:
    """Per-epoch mean loss terms; anything malformed reads as no history (plots skip it)."""
    if not isinstance(raw, list):
        return []
    epochs = []
    for entry in raw:
        if not isinstance(entry, dict):
            return []
        try:
            epochs.append({str(k): float(v) for k, v in entry.items()})
        except (TypeError, ValueError):
            return []
    return epochs


def parse_record(raw: Any) -> dict[str, Any]:
    """A record's fields the aggregator uses, checked; RecordError says why it cannot be used."""
    if not isinstance(raw, dict):
        raise RecordError("not a JSON object")
    record_format = raw.get("format")
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
    matrix = _matrix_of(raw, protocol)
    planned = protocol.get("trained_as")
    num_steps = int(raw["num_steps"]) if "num_steps" in raw else len(protocol["step_sizes"])
    step = int(raw["step"])
    # A plan with fewer steps than the protocol (joint) is scored as after the protocol's last.
    eval_step = len(protocol["step_sizes"]) - 1 if planned else step
    if not 0 <= step < num_steps:
        raise RecordError(f"step {step} outside 0..{num_steps - 1}")
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    return {
        "format": record_format, "protocol": protocol, "method": str(raw["method"]),
        "seed": int(raw["seed"]), "step": step, "eval_step": eval_step, "num_steps": num_steps,
        "data": data, "class_names": raw.get("class_names") or {},
        "iou": per_class_iou(matrix), "matrix": matrix,
        "versions": raw.get("versions") if isinstance(raw.get("versions"), dict) else {},
        "timings": raw.get("timings") if isinstance(raw.get("timings"), dict) else {},
        "step0_cache": raw.get("step0_cache") if isinstance(raw.get("step0_cache"),
                                                            dict) else None,
        "cost": raw.get("cost") if isinstance(raw.get("cost"), dict) else None,
        "loss_history": _loss_history(raw.get("loss_history")),
        **_spec_fields(raw, record_format),
    }


def data_origin(data: dict[str, Any]) -> tuple[str, str]:
    """(data set name, kind) from a record's `data` field: kind is real, synthetic or unknown,
    so a run on the embedded synthetic data can never land in a real-data column."""
    name = data.get("dataset")
    root = str(data.get("root") or "")  # format 1 stored the root
    if (isinstance(name, str) and name.startswith("synth-")) or "/synth-" in root:
        return str(name or "synth"), "synthetic"
    if name in REAL_DATASETS:
        return str(name), "real"
    return str(name or "unknown"), "unknown"

