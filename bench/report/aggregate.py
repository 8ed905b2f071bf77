"""Run records -> one long table: a row per (run, step, class) holding that class's IoU.

The aggregator reads records, never logs, and trusts nothing it cannot check:

- a run is complete only when its last step has a `done` marker; otherwise it is *partial*, and
  every row says so, so that a summary never averages a half-finished run with finished ones;
- a run whose stored spec resolves differently with today's code (a method default, a recipe
  or the spec format changed since it ran) is *stale*: listed apart, never averaged with
  current runs (see bench.spec.stale_reason);
- a record it cannot read (broken JSON, a newer format, no confusion matrix) is collected with its
  path and the reason, never skipped silently; the caller decides whether that is fatal;
- runs are identified by what their records claim (protocol, method, seed, run hash); the setup
  hash (the identity without the seed) groups the seeds of one configuration;
- the same run found under two runs roots (a run directory and its export to `results/`) is read
  once, the complete copy preferred, and reported.

Per-class IoU comes from the confusion matrix (`bench.metrics.per_class_iou`), so both metric
conventions and any grouping can be derived later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.errors import BenchError
from bench.spec import stale_reason
from bench.store.record_reading import RecordError, data_origin, parse_record
from bench.store.runs import RunDir, RunStore
from protocols.classes import CLASS_NAMES

LONG_COLUMNS = [
    "data", "data_kind", "protocol", "dataset", "setting", "mode", "method", "variant", "recipe",
    "seed", "run_hash", "setup_hash", "status", "step", "eval_step", "num_steps", "step_done",
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
    matrix: torch.Tensor
    record_format: int
    timings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    step0_cache: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None  # what the step cost (None: recorded before costs)
    loss_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Run:
    """One run directory: (protocol, method, seed, run hash) and its step records."""

    root: str
    run_dir: Path
    protocol: dict[str, Any]
    method: str
    seed: int
    run_hash: str
    setup_hash: str
    recipe: str
    params: dict[str, Any]
    data: str
    data_kind: str  # "real", "synthetic" or "unknown" (never shown as real data)
    num_steps: int  # steps the run itself stores (1 for joint)
    stale: str | None = None  # why the run's spec no longer resolves the same, if it does not
    steps: list[StepRecord] = field(default_factory=list)
    class_names: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return any(s.step == self.num_steps - 1 and s.done for s in self.steps)

    @property
    def status(self) -> str:
        if self.stale:
            return "stale"
        return "complete" if self.complete else "partial"

    @property
    def variant(self) -> str:
        """The method's `variant` hyperparameter, where it has one ("" otherwise)."""
        return str(self.params.get("variant", ""))

    @property
    def torch_versions(self) -> set[str]:
        """The torch releases its steps were computed with (records name them)."""
        return {str(s.versions.get("torch")) for s in self.steps if s.versions.get("torch")}

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.protocol["name"], self.method, self.seed, self.run_hash)

    @property
    def name(self) -> str:
        return f"{self.protocol['name']}/{self.method}/seed{self.seed}-{self.run_hash}"


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
        """Lines for the user: what was skipped, merged, stale or not yet started, and why."""
        lines = [f"unreadable record skipped: {u}" for u in self.unreadable]
        lines += [f"duplicate copy read once: {d}" for d in self.duplicate_copies]
        lines += [f"run without any finished step (partial, nothing to show): {p}"
                  for p in self.empty_runs]
        lines += [f"stale run, listed apart (today's resolution differs: {run.stale}): "
                  f"{run.run_dir}" for run in self.runs if run.stale]
        configs: dict[tuple[str, str, int], list[str]] = {}
        for run in self.runs:
            configs.setdefault((run.protocol["name"], run.method, run.seed), []).append(
                run.run_hash)
        for (protocol, method, seed), hashes in sorted(configs.items()):
            if len(hashes) > 1:
                lines.append(f"{protocol} / {method} / seed {seed} has {len(hashes)} "
                             f"configurations ({', '.join(sorted(hashes))}): shown separately, "
                             "never averaged together")
        return lines + self.mixed_versions()

    def mixed_versions(self) -> list[str]:
        """One warning per table cell (data, protocol, method, configuration) whose runs were
        computed with different torch releases: their spread then holds rounding differences
        between releases too (install with constraints.txt to reproduce committed runs)."""
        cells: dict[tuple[str, str, str, str], set[str]] = {}
        for run in self.runs:
            key = (run.data, run.protocol["name"], run.method, run.setup_hash)
            cells.setdefault(key, set()).update(run.torch_versions)
        return [f"warning: {protocol} / {method} (config {setup}) on {data} mixes runs of torch "
                f"{', '.join(sorted(versions))}: its spread holds rounding differences between "
                "releases too"
                for (data, protocol, method, setup), versions in sorted(cells.items())
                if len(versions) > 1]


# ----- a run, a collection --------------------------------------------------------------------


def read_run(root: str, run_dir: RunDir, unreadable: list[Unreadable]) -> Run | None:
    """The run stored in `run_dir`, or None when no step record is readable yet."""
    parsed: list[tuple[dict[str, Any], Path, bool]] = []
    for files in run_dir.step_files():
        if not files.has_record:
            continue  # a step still training: not a record yet
        path = files.record_path
        try:
            fields = parse_record(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
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
        parsed.append((fields, path, files.done))
    if not parsed:
        return None
    first = parsed[0][0]
    kept: list[tuple[dict[str, Any], Path, bool]] = []
    for fields, path, done in parsed:
        claims = (fields["protocol"]["name"], fields["method"], fields["seed"],
                  fields["run_hash"])
        expected = (first["protocol"]["name"], first["method"], first["seed"],
                    first["run_hash"])
        if claims != expected:
            unreadable.append(Unreadable(path, f"claims run {claims}, but the run's other "
                                               f"records claim {expected}"))
            continue
        if fields["seed"] != run_dir.seed or fields["run_hash"] != run_dir.run_hash:
            unreadable.append(Unreadable(path, f"claims seed {fields['seed']} / run "
                                               f"{fields['run_hash']} but lives in "
                                               f"{run_dir.path.name}"))
            continue
        kept.append((fields, path, done))
    if not kept:
        return None
    data, kind = data_origin(first["data"])
    run = Run(root=root, run_dir=run_dir.path, protocol=first["protocol"],
              method=first["method"], seed=first["seed"], run_hash=first["run_hash"],
              setup_hash=first["setup_hash"], recipe=first["recipe"], params=first["params"],
              data=data, data_kind=kind, num_steps=max(f["num_steps"] for f, _, _ in kept),
              stale=stale_reason(first["spec"]))
    for fields, path, done in kept:
        run.steps.append(StepRecord(
            path=path, step=fields["step"], eval_step=fields["eval_step"], done=done,
            iou=fields["iou"], matrix=fields["matrix"], record_format=fields["format"],
            timings=fields["timings"], versions=fields["versions"],
            step0_cache=fields["step0_cache"], cost=fields["cost"],
            loss_history=fields["loss_history"]))
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
        run_dirs = RunStore(root_path).runs()
        found_any = False
        for run_dir in run_dirs:
            before = len(unreadable)
            run = read_run(str(root), run_dir, unreadable)
            found_any = found_any or run is not None or len(unreadable) > before
            if run is None:
                if len(unreadable) == before:
                    empty.append(run_dir.path)
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
                "seed<k>-<run hash>/step<t>/record.json, as written by `bench run "
                f"--runs-root {root}`" + (f" ({len(run_dirs)} run directories without a "
                                          "finished step)" if run_dirs else ""))
    ordered = sorted(runs.values(), key=lambda r: (r.data_kind, r.data, r.protocol["name"],
                                                   r.method, r.recipe, r.setup_hash, r.seed))
    return RunCollection(roots=[str(r) for r in roots], runs=ordered, unreadable=unreadable,
                         duplicate_copies=duplicates, empty_runs=empty)


def has_runs(root: Path) -> bool:
    return bool(RunStore(root).runs())


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
                    "variant": run.variant, "recipe": run.recipe, "seed": run.seed,
                    "run_hash": run.run_hash, "setup_hash": run.setup_hash,
                    "status": run.status, "step": record.step,
                    "eval_step": record.eval_step, "num_steps": run.num_steps,
                    "step_done": record.done, "class": label,
                    "class_name": run.class_names.get(str(label), str(label)),
                    "channel": channel, "added_at_step": added[channel],
                    "iou": 100.0 * value if not math.isnan(value) else math.nan,
                    "record_format": record.record_format, "run": str(run.run_dir),
                })
    table = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return table.astype({"record_format": "Int64"})
