"""The layout of a runs root, written and read here only:

    <runs_root>/<protocol>/<method>/seed<k>-<run hash>/
        spec.json                   the resolved run spec (identity and the names it came from),
                                    written with the run's first epoch checkpoint or step
        data_roots.json             where the real data of each step was read (not identity:
                                    another copy with the same content is the same data)
        step<t>/record.json         per-class IoU, old/new/all, confusion matrix, spec, versions
        step<t>/checkpoint.pt       model + method state after the step; a shared step 0
                                    holds `model_ref`, the step-0 cache file, instead of weights
        step<t>/epoch.pt            the last finished epoch of an unfinished step
        step<t>/progress.json       where an unfinished step stands (epoch, seconds so far)
        tensorboard/step<t>/        TensorBoard event files (logger=tensorboard)
        step<t>/done                written last: the step is complete
    <runs_root>/_step0/<key>/       step-0 checkpoints shared between methods (see step0_cache)
    <runs_root>/_locks/<run>.lock   held while a process computes the run's steps
    <runs_root>/_<anything>/        other bookkeeping (sweep manifests); never a run

Every file is written to a temporary name and renamed into place, so a crash at any moment leaves
either the old file or the new one; a step without `done` is not complete, whatever else exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.store.atomic import write_text_atomic
from bench.store.files import load_torch, read_json, save_torch, write_json
from bench.store.locks import exclusive

SPEC_FILE = "spec.json"
DATA_ROOTS_FILE = "data_roots.json"
LOCKS_DIR = "_locks"
_RUN_DIR = re.compile(r"^seed(?P<seed>-?\d+)-(?P<hash>[0-9a-zA-Z]+)$")
_STEP_DIR = re.compile(r"^step(?P<step>\d+)$")


@dataclass(frozen=True)
class StepFiles:
    """The files of one step of a run as found on disk."""

    step: int
    directory: Path

    @property
    def record_path(self) -> Path:
        return self.directory / "record.json"

    @property
    def has_record(self) -> bool:
        return self.record_path.is_file()

    @property
    def done(self) -> bool:
        return (self.directory / "done").is_file()


class RunDir:
    """The files of one run: (protocol, method, seed, run hash) under a runs root."""

    def __init__(self, runs_root: Path | str, protocol: str, method: str, seed: int,
                 run_hash: str) -> None:
        self.runs_root = Path(runs_root)
        self.protocol, self.method, self.seed, self.run_hash = protocol, method, seed, run_hash
        self.group_dir = self.runs_root / protocol / method
        self.path = self.group_dir / f"seed{seed}-{run_hash}"

    def __repr__(self) -> str:
        return f"RunDir({self.path})"

    @property
    def name(self) -> str:
        return f"{self.protocol}/{self.method}/seed{self.seed}-{self.run_hash}"

    # ----- the spec -------------------------------------------------------------------------
    @property
    def spec_path(self) -> Path:
        return self.path / SPEC_FILE

    def exists(self) -> bool:
        return self.spec_path.is_file() or bool(self.step_files())

    def read_spec(self) -> dict[str, Any] | None:
        if not self.spec_path.is_file():
            return None
        return read_json(self.spec_path, f"delete it; the next `bench run` of {self.name} "
                                          "writes it again")

    def write_spec(self, spec: dict[str, Any]) -> None:
        """Written once: a finished run in a read-only store is never rewritten."""
        if not self.spec_path.is_file():
            write_json(self.spec_path, spec)

    def siblings(self) -> list[RunDir]:
        """Other runs of the same (protocol, method, seed): other identities."""
        if not self.group_dir.is_dir():
            return []
        found = []
        for path in sorted(self.group_dir.iterdir()):
            match = _RUN_DIR.match(path.name)
            if match and path != self.path and int(match["seed"]) == self.seed:
                found.append(RunDir(self.runs_root, self.protocol, self.method, self.seed,
                                    match["hash"]))
        return found

    # ----- steps ----------------------------------------------------------------------------
    def step_dir(self, step: int) -> Path:
        return self.path / f"step{step}"

    def step_files(self) -> list[StepFiles]:
        if not self.path.is_dir():
            return []
        steps = []
        for child in self.path.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and child.is_dir():
                steps.append(StepFiles(int(match["step"]), child))
        return sorted(steps, key=lambda s: s.step)

    def is_done(self, step: int) -> bool:
        return (self.step_dir(step) / "done").is_file()

    def done_steps(self, num_steps: int) -> list[int]:
        return [step for step in range(num_steps) if self.is_done(step)]

    def record(self, step: int) -> dict[str, Any]:
        return read_json(self.step_dir(step) / "record.json", self.recompute_advice(step))

    def epoch_checkpoint(self, step: int) -> Path:
        return self.step_dir(step) / "epoch.pt"

    def progress_path(self, step: int) -> Path:
        return self.step_dir(step) / "progress.json"

    def write_progress(self, step: int, progress: dict[str, Any]) -> None:
        write_json(self.progress_path(step), progress)

    def read_progress(self, step: int) -> dict[str, Any] | None:
        """Where an unfinished step stands, or None (none written, or unreadable: it is only
        a hint for `bench status`)."""
        try:
            return read_json(self.progress_path(step), "")
        except BenchError:  # missing or half-written: no hint
            return None

    def tensorboard_dir(self, step: int) -> Path:
        return self.path / "tensorboard" / f"step{step}"

    def checkpoint(self, step: int) -> dict[str, Any]:
        return load_torch(self.step_dir(step) / "checkpoint.pt", self.recompute_advice(step))

    def recompute_advice(self, step: int) -> str:
        """Exactly what to delete so that `bench run` recomputes `step` (every later step was
        computed from it, so those go too)."""
        folders = [str(f.directory) for f in self.step_files() if f.step >= step]
        folders = folders or [str(self.step_dir(step))]
        return (f"delete {' '.join(folders)} (rm -r {' '.join(folders)}); the next `bench run` "
                f"of this run recomputes from step {step}")

    def finish_step(self, step: int, record: dict[str, Any], checkpoint: dict[str, Any],
                    data_root: str | None = None) -> None:
        """Write the step's checkpoint, then its record, then `done`; drop the epoch state.
        `data_root`: where the step's real data was read (None for the embedded data)."""
        directory = self.step_dir(step)
        save_torch(directory / "checkpoint.pt", checkpoint)
        write_json(directory / "record.json", record)
        if data_root is not None:
            roots = self.data_roots()
            roots[step] = data_root
            write_json(self.path / DATA_ROOTS_FILE, {str(k): v for k, v in sorted(roots.items())})
        write_text_atomic(directory / "done", "")
        (directory / "epoch.pt").unlink(missing_ok=True)
        (directory / "progress.json").unlink(missing_ok=True)

    def data_roots(self) -> dict[int, str]:
        """step -> the data root it was computed from (steps on real data, where known)."""
        path = self.path / DATA_ROOTS_FILE
        if not path.is_file():
            return {}
        try:
            return {int(k): str(v) for k, v in read_json(path).items()}
        except (AttributeError, ValueError, BenchError):  # only informative: never blocks
            return {}

    def lock(self, on_wait: Callable[[str], None]) -> AbstractContextManager[None]:
        """Held while a process computes this run's steps: a second process waits (told so
        through `on_wait`), then reads what the first finished instead of computing it."""
        name = f"{self.protocol}+{self.method}+seed{self.seed}-{self.run_hash}.lock"
        return exclusive(
            self.runs_root / LOCKS_DIR / name, f"run {self.name}", on_wait,
            f"the runs root {self.runs_root} is not writable and this run has steps to "
            "compute; pass a writable --runs-root (a finished run is read from a read-only "
            "store without writing)")


class RunStore:
    """A runs root: where runs are, and every run found under it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def run(self, protocol: str, method: str, seed: int, run_hash: str) -> RunDir:
        return RunDir(self.root, protocol, method, seed, run_hash)

    def runs(self) -> list[RunDir]:
        """Every run directory under the root, searched recursively (a root may hold several
        stores, e.g. `runs/` with `runs/embedded/`), skipping `_*` and `.*` folders."""
        return list(self._walk())

    def _walk(self) -> Iterator[RunDir]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
            here = Path(dirpath)
            match = _RUN_DIR.match(here.name)
            if match and (SPEC_FILE in filenames or any(_STEP_DIR.match(d) for d in dirnames)):
                yield RunDir(here.parents[2], here.parent.parent.name, here.parent.name,
                             int(match["seed"]), match["hash"])
                dirnames[:] = []
