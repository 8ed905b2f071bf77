"""What a sweep must run: the unique step-0 jobs and the per-run jobs, minus what is done.

Runs that train the same step 0 (same Step0Cache key: e.g. voc-15-1 and voc-15-5 with the same
seed and recipe) share one step-0 job; every run then depends on the step-0 job it needs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from bench.commands.common import build_config
from bench.errors import BenchError


@dataclass
class PlannedRun:
    protocol: str
    method: str
    seed: int
    config: dict[str, Any]
    config_hash: str
    run_dir: str
    num_steps: int
    done_steps: int
    step0_key: str
    step0_done: bool

    @property
    def label(self) -> str:
        return f"{self.protocol}/{self.method}/seed{self.seed}"

    @property
    def finished(self) -> bool:
        return self.done_steps == self.num_steps


@dataclass
class Step0Job:
    key: str
    config: dict[str, Any]  # the config of the first run needing it (it trains step 0 only)
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


def plan_runs(protocols: list[str], methods: list[str], seeds: list[int], overrides: list[str],
              runs_root: str | None) -> Plan:
    """Resolve every (protocol, method, seed) config and look its progress up in the store."""
    from bench.runner import Runner  # torch and data only once the arguments are valid

    runs: list[PlannedRun] = []
    step0: dict[str, Step0Job] = {}
    for protocol in protocols:
        for method in methods:
            for seed in seeds:
                args = argparse.Namespace(protocol=protocol, method=method, seed=seed,
                                          data_root=None, dataset=None, runs_root=runs_root,
                                          quiet=True, overrides=list(overrides))
                config, _ = build_config(args)
                runner = Runner(config, log=lambda _: None)
                key = _step0_key(runner)
                store = runner.store
                run = PlannedRun(
                    protocol=runner.requested.name, method=runner.method.name, seed=seed,
                    config=config, config_hash=runner.hash, run_dir=str(store.run_dir),
                    num_steps=runner.protocol.num_steps,
                    done_steps=sum(store.is_done(s) for s in range(runner.protocol.num_steps)),
                    step0_key=key, step0_done=runner.step0_cache.is_done(key))
                runs.append(run)
                if not run.finished and not run.step0_done and not store.is_done(0):
                    step0.setdefault(key, Step0Job(key, config)).runs.append(run)
    return Plan(runs, list(step0.values()))


def _step0_key(runner: Any) -> str:
    from bench.step0_cache import step0_key

    return step0_key(runner.step0_parts())
