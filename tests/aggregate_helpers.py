"""Crafted run records in the store's layout, with confusion matrices whose IoUs are known by hand.

The main fixture is VOC 19-1 (overlapped): step 0 learns 0-19, step 1 adds 20 (tvmonitor).
`matrix_19_1(correct_new)` puts 10 pixels of every seen class on the diagonal, except class 20,
of which `correct_new` are right and the rest predicted as background. So, by hand:

    IoU(20) = correct_new / 10        IoU(0) = 10 / (10 + 10 - correct_new)      others = 1
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.config import config_hash as hash_of
from protocols import get_protocol

SYNTH_DATA = {"dataset": "synth-voc", "root": "/cache/synth/synth-voc-0123456789ab",
              "train_images": 10, "test_images": 5}
REAL_DATA = {"dataset": "voc", "root": "/data/VOCdevkit/VOC2012", "train_images": 10,
             "test_images": 5}


def identity_matrix(size: int, pixels: int = 10) -> list[list[int]]:
    return [[pixels if row == col else 0 for col in range(size)] for row in range(size)]


def matrix_19_1(correct_new: int) -> list[list[int]]:
    matrix = identity_matrix(21)
    matrix[20][20] = correct_new
    matrix[20][0] = 10 - correct_new
    return matrix


def config_for(seed: int, lr: float = 0.1, recipe: str = "synth") -> dict[str, Any]:
    return {"seed": seed, "trainer": {"name": recipe, "lr": lr}, "model": {"name": "small"}}


def write_record(root: Path, *, step: int, matrix: list[list[int]] | None,
                 protocol: str = "voc-19-1", method: str = "ft", seed: int = 0,
                 config_hash: str | None = None, config: dict[str, Any] | None = None,
                 data: dict[str, Any] | None = None, done: bool = True,
                 **changes: Any) -> Path:
    """Write `<root>/<protocol>/<method>/seed<k>-<hash>/step<t>/record.json` (+ `done`)."""
    described = get_protocol(protocol)
    config = config or config_for(seed)
    config_hash = config_hash or hash_of(config)
    seen = described.seen_classes(step)
    record: dict[str, Any] = {
        "format": 1, "protocol": described.to_dict(), "method": method, "seed": seed,
        "step": step, "num_steps": described.num_steps,
        "class_names": {str(c): described.class_name(c) for c in seen},
        "scores": {}, "confusion_matrix": matrix, "config": config,
        "config_hash": config_hash, "data": data or SYNTH_DATA,
    }
    record.update(changes)
    if matrix is None:
        record.pop("confusion_matrix")
    step_dir = root / protocol / method / f"seed{seed}-{config_hash}" / f"step{step}"
    step_dir.mkdir(parents=True, exist_ok=True)
    (step_dir / "record.json").write_text(json.dumps(record))
    if done:
        (step_dir / "done").write_text("")
    return step_dir / "record.json"


def write_run_19_1(root: Path, *, correct_new: int, seed: int, method: str = "ft",
                   complete: bool = True, **kwargs: Any) -> None:
    """Both steps of a VOC 19-1 run (step 0 perfect), or step 0 only when not complete."""
    write_record(root, step=0, matrix=identity_matrix(20), method=method, seed=seed, **kwargs)
    if complete:
        write_record(root, step=1, matrix=matrix_19_1(correct_new), method=method, seed=seed,
                     **kwargs)
