"""Run records -> one long table: a row per (run, step, class) holding that class's IoU.

The aggregator reads records, never logs, and trusts nothing it cannot check:

- a run is complete only when its last step has a `done` marker; otherwise it is *partial*, and
  every row says so, so that a summary never averages a half-finished run with finished ones;
- a record it cannot read (broken JSON, a newer format, no per-class information) is collected
  with its path and the reason, never skipped silently; the caller decides whether that is fatal;
- runs are identified by what their records claim (protocol, method, seed, config hash). Two runs
  of the same (protocol, method, seed) with different config hashes stay two runs, and the
  config hash without the seed (`setup_hash`) groups seeds of one configuration;
- the same run found under two runs roots (a run directory and its export to `results/`) is read
  once, the complete copy preferred, and reported.

Per-class IoU comes from the confusion matrix (`bench.metrics.per_class_iou`), so both metric
conventions and any grouping can be derived later; records without a matrix (older layouts) fall
back to their stored `scores.per_class` (see `bench.record_reading`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.config import config_hash
from bench.errors import BenchError
from bench.record_reading import RecordError, data_origin, parse_record
from protocols.classes import CLASS_NAMES

_RUN_DIR = re.compile(r"^seed(?P<seed>-?\d+)-(?P<hash>[0-9a-zA-Z]+)$")
_STEP_DIR = re.compile(r"^step(?P<step>\d+)$")

LONG_COLUMNS = [
    "data", "data_kind", "protocol", "dataset", "setting", "mode", "method", "recipe", "seed",
    "config_hash", "setup_hash", "status", "step", "eval_step", "num_steps", "step_done",
    "class", "class_name", "channel", "added_at_step", "iou", "record_format", "run",
]  # fmt: skip


@dataclass(frozen=True)
class Unreadable:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class StepRecord:
    """One step of a run, reduced to what the aggregator needs."""

    path: Path
    step: int
    # The protocol step whose classes the scores cover: the step itself, except for a method
    # that trains another plan of the protocol (joint: one step, scored as after the last one).
    eval_step: int
    done: bool
    iou: torch.Tensor  # per model channel (= position in class_order), fraction, NaN: no GT
    matrix: torch.Tensor | None
    record_format: int | None


@dataclass
class Run:
    """One run directory: (protocol, method, seed, config hash) and its step records."""

    root: str
    run_dir: Path
    protocol: dict[str, Any]
    method: str
    seed: int
    config_hash: str
    setup_hash: str
    recipe: str
    data: str
    data_kind: str  # "real", "synthetic" or "unknown" (never shown as real data)
    num_steps: int  # steps the run itself stores (1 for joint)
    steps: list[StepRecord] = field(default_factory=list)
    class_names: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return any(s.step == self.num_steps - 1 and s.done for s in self.steps)

    @property
    def status(self) -> str:
        return "complete" if self.complete else "partial"

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.protocol["name"], self.method, self.seed, self.config_hash)

    @property
    def name(self) -> str:
        return f"{self.protocol['name']}/{self.method}/seed{self.seed}-{self.config_hash}"


@dataclass
class RunCollection:
    """Everything read from the given runs roots, including what could not be read."""

    roots: list[str]
    runs: list[Run]
    unreadable: list[Unreadable]
    duplicate_copies: list[str]
    empty_runs: list[Path]  # run directories without a single step record yet

    def require_readable(self) -> None:
        """Refuse to aggregate around unreadable records unless the caller chose to skip them."""
        if self.unreadable:
            listed = "\n  - ".join(str(u) for u in self.unreadable)
            raise BenchError(
                f"{len(self.unreadable)} record(s) could not be read:\n  - {listed}\n"
                "fix or delete them, or pass --skip-unreadable to aggregate the rest (they are "
                "still listed)")

    def notices(self) -> list[str]:
        """Lines for the user: what was skipped, merged or not yet started, and why."""
        lines = [f"unreadable record skipped: {u}" for u in self.unreadable]
        lines += [f"duplicate copy read once: {d}" for d in self.duplicate_copies]
        lines += [f"run without any finished step (partial, nothing to show): {p}"
                  for p in self.empty_runs]
        configs: dict[tuple[str, str, int], list[str]] = {}
        for run in self.runs:
            configs.setdefault((run.protocol["name"], run.method, run.seed), []).append(
                run.config_hash)
        for (protocol, method, seed), hashes in sorted(configs.items()):
            if len(hashes) > 1:
                lines.append(f"{protocol} / {method} / seed {seed} has {len(hashes)} "
                             f"configurations ({', '.join(sorted(hashes))}): shown separately, "
                             "never averaged together")
        return lines


# ----- discovery ------------------------------------------------------------------------------


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories (`seed<k>-<hash>`) anywhere under `root`, skipping shared step-0 caches.

    Searching recursively lets a root hold several stores (e.g. `runs/` with `runs/embedded/`).
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        here = Path(dirpath)
        if _RUN_DIR.match(here.name) and (
                "config.json" in filenames or any(_STEP_DIR.match(d) for d in dirnames)):
            found.append(here)
            dirnames[:] = []
    return found


def step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    steps = []
    for child in run_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            steps.append((int(match["step"]), child))
    return sorted(steps)


def setup_hash(config: dict[str, Any] | None, fallback: str) -> str:
    """The config hash without the seed: the identity shared by the seeds of one setup."""
    if config is None:
        return f"run-{fallback}"  # nothing to compare: the run stands alone
    return config_hash({**config, "seed": None})


# ----- a run, a collection --------------------------------------------------------------------


def read_run(root: str, run_dir: Path, unreadable: list[Unreadable]) -> Run | None:
    """The run stored in `run_dir`, or None when no step record is readable yet."""
    parsed: list[tuple[dict[str, Any], Path, bool]] = []
    for _, directory in step_dirs(run_dir):
        path = directory / "record.json"
        if not path.is_file():
            continue  # a step still training: not a record yet
        try:
            raw = json.loads(path.read_text())
            fields = parse_record(raw)
        except (OSError, json.JSONDecodeError) as error:
            unreadable.append(Unreadable(path, f"not readable JSON ({error})"))
            continue
        except RecordError as error:
            unreadable.append(Unreadable(path, str(error)))
            continue
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            # A field of the wrong type (e.g. a seed that is not a number): name it, go on.
            unreadable.append(Unreadable(path, f"malformed record ({type(error).__name__}: "
                                               f"{error})"))
            continue
        parsed.append((fields, path, (directory / "done").is_file()))
    if not parsed:
        return None
    first = parsed[0][0]
    match = _RUN_DIR.match(run_dir.name)
    kept: list[tuple[dict[str, Any], Path, bool]] = []
    for fields, path, done in parsed:
        claims = (fields["protocol"]["name"], fields["method"], fields["seed"],
                  fields["config_hash"])
        expected = (first["protocol"]["name"], first["method"], first["seed"],
                    first["config_hash"])
        if claims != expected:
            unreadable.append(Unreadable(path, f"claims run {claims}, but the run's other "
                                               f"records claim {expected}"))
            continue
        if match and (str(fields["seed"]) != match["seed"]
                      or fields["config_hash"] not in (match["hash"], "unknown")):
            unreadable.append(Unreadable(path, f"claims seed {fields['seed']} / config "
                                               f"{fields['config_hash']} but lives in "
                                               f"{run_dir.name}"))
            continue
        kept.append((fields, path, done))
    if not kept:
        return None
    data, kind = data_origin(first["data"])
    config = first["config"]
    recipe = str(((config or {}).get("trainer") or {}).get("name") or "unknown")
    run = Run(root=root, run_dir=run_dir, protocol=first["protocol"], method=first["method"],
              seed=first["seed"], config_hash=first["config_hash"],
              setup_hash=setup_hash(config, first["config_hash"]), recipe=recipe, data=data,
              data_kind=kind, num_steps=max(f["num_steps"] for f, _, _ in kept))
    for fields, path, done in kept:
        run.steps.append(StepRecord(path=path, step=fields["step"], eval_step=fields["eval_step"],
                                    done=done, iou=fields["iou"], matrix=fields["matrix"],
                                    record_format=fields["format"]))
    run.class_names = {**{str(i): n for i, n in enumerate(CLASS_NAMES.get(
        run.protocol.get("dataset", ""), ()))}, **first["class_names"]}
    return run


def load_runs(roots: Sequence[str | Path]) -> RunCollection:
    """Every run under the given roots. A root without any record is a user error."""
    runs: dict[tuple[str, str, int, str], Run] = {}
    unreadable: list[Unreadable] = []
    duplicates: list[str] = []
    empty: list[Path] = []
    for root in roots:
        root_path = Path(root)
        if not root_path.is_dir():
            raise BenchError(f"runs root {root} does not exist (expected a directory written by "
                             "`bench run --runs-root`)")
        run_dirs = find_run_dirs(root_path)
        found_any = False
        for run_dir in run_dirs:
            before = len(unreadable)
            run = read_run(str(root), run_dir, unreadable)
            found_any = found_any or run is not None or len(unreadable) > before
            if run is None:
                if len(unreadable) == before:
                    empty.append(run_dir)
                continue
            earlier = runs.get(run.key)
            if earlier is None:
                runs[run.key] = run
                continue
            keep, drop = (run, earlier) if run.complete and not earlier.complete else (earlier,
                                                                                       run)
            runs[run.key] = keep
            duplicates.append(f"{drop.run_dir} (same run as {keep.run_dir}; read once, "
                              f"{keep.status} copy kept)")
        if not found_any:
            raise BenchError(
                f"no run records under {root}: expected <root>/<protocol>/<method>/"
                "seed<k>-<config hash>/step<t>/record.json, as written by `bench run "
                f"--runs-root {root}`" + (f" ({len(run_dirs)} run directories without a "
                                          "finished step)" if run_dirs else ""))
    ordered = sorted(runs.values(), key=lambda r: (r.data_kind, r.data, r.protocol["name"],
                                                   r.method, r.recipe, r.setup_hash, r.seed))
    return RunCollection(roots=[str(r) for r in roots], runs=ordered, unreadable=unreadable,
                         duplicate_copies=duplicates, empty_runs=empty)


# ----- the long table -------------------------------------------------------------------------


def _added_at(protocol: dict[str, Any]) -> list[int]:
    """For each channel, the step that adds it."""
    added: list[int] = []
    for step, size in enumerate(protocol["step_sizes"]):
        added += [step] * size
    return added


def long_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per (run, step, seen class): IoU in % (NaN where the class had no ground truth)."""
    rows = []
    for run in runs:
        protocol = run.protocol
        order = protocol["class_order"]
        added = _added_at(protocol)
        for record in sorted(run.steps, key=lambda s: s.step):
            for channel, value in enumerate(record.iou.tolist()):
                label = order[channel]
                rows.append({
                    "data": run.data, "data_kind": run.data_kind, "protocol": protocol["name"],
                    "dataset": protocol.get("dataset", "unknown"),
                    "setting": protocol.get("setting", "unknown"),
                    "mode": protocol.get("mode", "unknown"), "method": run.method,
                    "recipe": run.recipe, "seed": run.seed, "config_hash": run.config_hash,
                    "setup_hash": run.setup_hash, "status": run.status, "step": record.step,
                    "eval_step": record.eval_step, "num_steps": run.num_steps,
                    "step_done": record.done, "class": label,
                    "class_name": run.class_names.get(str(label), str(label)),
                    "channel": channel, "added_at_step": added[channel],
                    "iou": 100.0 * value if not math.isnan(value) else math.nan,
                    "record_format": record.record_format, "run": str(run.run_dir),
                })
    table = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return table.astype({"record_format": "Int64"})
