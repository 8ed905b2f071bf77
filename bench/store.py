"""The results store: one directory per run, one sub-directory per step, atomic files only.

    <runs_root>/<protocol>/<method>/seed<k>-<config hash>/
        config.json                 the resolved configuration (identity + execution settings)
        step<t>/record.json         per-class IoU, old/new/all, confusion matrix, config, versions
        step<t>/checkpoint.pt       model + method state after the step; a shared step 0
                                    holds `model_ref`, the step-0 cache file, instead of weights
        step<t>/epoch.pt            the last finished epoch of an unfinished step
        step<t>/done                written last: the step is complete
    <runs_root>/_step0/<key>/       step-0 checkpoints shared between methods (see step0_cache)

Every file is written to a temporary name and renamed into place, so a crash at any moment leaves
either the old file or the new one; a step without `done` is not complete, whatever else exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bench.data.atomic import write_atomic, write_text_atomic
from bench.errors import BenchError

RECORD_FORMAT = 1


def write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(f"{path} is unreadable ({error}); delete it to recompute that "
                         "step") from None


def save_torch(path: Path, payload: Any) -> None:
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise BenchError(f"checkpoint {path} is unreadable ({error}); delete it to retrain "
                         "from the last complete step") from None


class RunStore:
    """Files of one run (protocol, method, seed, config hash)."""

    def __init__(self, runs_root: Path, protocol: str, method: str, seed: int,
                 config_hash: str) -> None:
        self.runs_root = Path(runs_root)
        self.group_dir = self.runs_root / protocol / method
        self.run_dir = self.group_dir / f"seed{seed}-{config_hash}"
        self.seed = seed

    def siblings(self) -> list[Path]:
        """Other runs of the same (protocol, method, seed) with a different config."""
        if not self.group_dir.is_dir():
            return []
        return sorted(p for p in self.group_dir.glob(f"seed{self.seed}-*") if p != self.run_dir)

    def exists(self) -> bool:
        return (self.run_dir / "config.json").is_file()

    def write_config(self, config: dict[str, Any]) -> None:
        path = self.run_dir / "config.json"
        if not path.is_file() or read_json(path) != config:
            write_json(path, config)

    def step_dir(self, step: int) -> Path:
        return self.run_dir / f"step{step}"

    def is_done(self, step: int) -> bool:
        return (self.step_dir(step) / "done").is_file()

    def record(self, step: int) -> dict[str, Any]:
        return read_json(self.step_dir(step) / "record.json")

    def finish_step(self, step: int, record: dict[str, Any], checkpoint: dict[str, Any]) -> None:
        """Write the step's checkpoint, then its record, then `done`; drop the epoch state."""
        directory = self.step_dir(step)
        save_torch(directory / "checkpoint.pt", checkpoint)
        write_json(directory / "record.json", record)
        write_text_atomic(directory / "done", "")
        (directory / "epoch.pt").unlink(missing_ok=True)

    def epoch_checkpoint(self, step: int) -> Path:
        return self.step_dir(step) / "epoch.pt"
