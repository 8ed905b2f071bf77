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

from bench.spec import RunSpec
from protocols import get_protocol

SYNTH_DATA = {"dataset": "synth-voc", "digest": "0123456789abcdef", "train_images": 10,
              "test_images": 5}
REAL_DATA = {"dataset": "voc", "digest": "fedcba9876543210", "train_images": 10,
             "test_images": 5}


def identity_matrix(size: int, pixels: int = 10) -> list[list[int]]:
    return [[pixels if row == col else 0 for col in range(size)] for row in range(size)]


def matrix_19_1(correct_new: int) -> list[list[int]]:
    matrix = identity_matrix(21)
    matrix[20][20] = correct_new
    matrix[20][0] = 10 - correct_new
    return matrix


def spec_for(protocol: str, method: str, seed: int, overrides: tuple[str, ...] = (),
             dataset: str = "synth-voc") -> dict[str, Any]:
    """A real resolved spec (today's code, data digest left out) as a record stores it."""
    return RunSpec.from_names(protocol, method, seed, overrides, dataset=dataset,
                              resolve_data=False).to_dict()


def write_record(root: Path, *, step: int, matrix: list[list[int]] | None,
                 protocol: str = "voc-19-1", method: str = "ft", seed: int = 0,
                 overrides: tuple[str, ...] = (), data: dict[str, Any] | None = None,
                 done: bool = True, **changes: Any) -> Path:
    """Write `<root>/<protocol>/<method>/seed<k>-<hash>/step<t>/record.json` (+ `done`)."""
    described = get_protocol(protocol)
    data = data or SYNTH_DATA
    spec = spec_for(protocol, method, seed, overrides, data["dataset"])
    seen = described.seen_classes(step)
    record: dict[str, Any] = {
        "format": 2, "protocol": described.to_dict(), "method": method, "seed": seed,
        "run_hash": spec["hash"], "step": step, "num_steps": described.num_steps,
        "class_names": {str(c): described.class_name(c) for c in seen},
        "scores": {}, "confusion_matrix": matrix, "spec": spec, "data": data,
    }
    record.update(changes)
    if matrix is None:
        record.pop("confusion_matrix")
    step_dir = root / protocol / method / f"seed{seed}-{spec['hash']}" / f"step{step}"
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
