"""What a sweep must run: the unique step-0 jobs and the per-run jobs, minus what is done.

Runs that train the same step 0 (same step-0 cache key: e.g. voc-15-1 and voc-15-5 with the same
seed and recipe) share one step-0 job; every run then depends on the step-0 job it needs. Keys
and run directories come from the resolved specs alone: no Runner is built to plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.spec import RunSpec
from bench.store.runs import RunDir, RunStore
from bench.store.step0_cache import Step0Cache, step0_key


@dataclass
class PlannedRun:
    spec: RunSpec
    run_dir: RunDir
    done_steps: int
    step0_key: str
    step0_done: bool

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def num_steps(self) -> int:
        return self.spec.num_steps

    @property
    def finished(self) -> bool:
        return self.done_steps == self.num_steps


@dataclass
class Step0Job:
    key: str
    spec: RunSpec  # the spec of the first run needing it (it trains step 0 only)
    runs: list[PlannedRun] = field(default_factory=list)


@dataclass
class Plan:
    runs: list[PlannedRun]
    step0_jobs: list[Step0Job]  # only step 0s not yet in the cache

    def pending(self) -> list[PlannedRun]:
        return [run for run in self.runs if not run.finished]


def split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BenchError(f"--{what} is empty; give a comma-separated list")
    return items


def plan_specs(specs: Sequence[RunSpec]) -> Plan:
    """Look every spec's progress up in its store and group the missing step 0s."""
    from bench.data.sources import source_of
    from bench.engine.runner import step0_parts  # torch only once the arguments are valid

    runs: list[PlannedRun] = []
    step0: dict[str, Step0Job] = {}
    for spec in specs:
        root = spec.execution.runs_root
        run_dir = RunStore(Path(root).resolve()).run(spec.protocol.name, spec.method,
                                                     spec.seed, spec.run_hash)
        key = step0_key(step0_parts(spec, source_of(spec.data).index(log=lambda _: None)))
        run = PlannedRun(spec, run_dir, len(run_dir.done_steps(spec.num_steps)), key,
                         Step0Cache(root).is_done(key))
        runs.append(run)
        if not run.finished and not run.step0_done and not run_dir.is_done(0):
            step0.setdefault(key, Step0Job(key, spec)).runs.append(run)
    return Plan(runs, list(step0.values()))
