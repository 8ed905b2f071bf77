"""A tiny but real run configuration for engine tests: seconds per run on 2 CPU cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TINY = [
    "data.synth.n_train=64", "data.synth.n_val=16", "data.synth.width=48",
    "data.synth.height=36", "model.base_channels=8", "model.aspp_channels=16",
    "trainer.crop=32", "trainer.batch_size=8", "trainer.epochs=2",
    "trainer.epochs_incremental=2", "trainer.eval_batch_size=16",
    "model.pretrained=none",  # the embedded pretraining has its own tests (test_pretraining.py)
]


def bench(*args: str, runs_root: Path, cache: Path, check: bool = True,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real `bench` CLI in a subprocess (as a user would), with a private cache."""
    full_env = {**os.environ, "CSS_BENCH_CACHE": str(cache), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", *args, "--runs-root", str(runs_root)],
        capture_output=True, text=True, env=full_env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def records(run_dir: Path) -> list[dict]:
    from bench.store.records import comparable

    steps = sorted(run_dir.glob("step*/record.json"), key=lambda p: int(p.parent.name[4:]))
    return [comparable(json.loads(p.read_text())) for p in steps]


def run_dir(runs_root: Path, protocol: str, method: str) -> Path:
    (found,) = (runs_root / protocol / method).glob("seed*")
    return found


def spec_of(protocol: str, method: str, runs_root: Path | str, *overrides: str, seed: int = 0):
    """The resolved spec of a tiny run (the embedded data, generated on first use)."""
    from bench.spec import RunSpec

    return RunSpec.from_names(protocol, method, seed=seed,
                              overrides=[*TINY, *overrides, f"runs_root={runs_root}",
                                         "quiet=true"])
