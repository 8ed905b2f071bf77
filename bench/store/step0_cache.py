"""Step 0 shared between methods and protocols, keyed by everything step 0 depends on.

Most methods train step 0 with the same step-0 recipe, and several protocols share their first
step (voc-15-1 and voc-15-5 learn the same classes from the same images). The key hashes what
step 0 computes from (the engine says what: data, label tables, model, recipe, seed, step-0
recipe). Two processes needing the same step 0 take a file lock: the second waits, then reuses
what the first wrote.

    <runs_root>/_step0/<key>/checkpoint.pt    the model and what the step-0 recipe recorded
    <runs_root>/_step0/<key>/evaluation.json  confusion matrix, loss history, timings
    <runs_root>/_step0/<key>/key.json         what the key was computed from
    <runs_root>/_step0/<key>/done             written last
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.store.atomic import write_text_atomic
from bench.store.files import load_torch, read_json, save_torch, write_json

CACHE_DIR = "_step0"


def step0_key(parts: dict[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Step0Cache:
    def __init__(self, runs_root: Path | str) -> None:
        self.root = Path(runs_root) / CACHE_DIR

    def directory(self, key: str) -> Path:
        return self.root / key

    def relative_directory(self, key: str) -> str:
        """The entry's folder relative to the runs root (records hold no absolute path)."""
        return f"{CACHE_DIR}/{key}"

    def relative_checkpoint(self, key: str) -> str:
        return f"{CACHE_DIR}/{key}/checkpoint.pt"

    def is_done(self, key: str) -> bool:
        return (self.directory(key) / "done").is_file()

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save(self, key: str, checkpoint: dict[str, Any], evaluation: dict[str, Any],
             description: dict[str, Any]) -> None:
        directory = self.directory(key)
        save_torch(directory / "checkpoint.pt", checkpoint)
        write_json(directory / "evaluation.json", evaluation)
        write_json(directory / "key.json", description)
        write_text_atomic(directory / "done", "")

    def _advice(self, key: str) -> str:
        return f"delete {self.directory(key)} to train this step 0 again"

    def evaluation(self, key: str) -> dict[str, Any]:
        return read_json(self.directory(key) / "evaluation.json", self._advice(key))

    def checkpoint(self, key: str) -> dict[str, Any]:
        return load_torch(self.directory(key) / "checkpoint.pt", self._advice(key))
