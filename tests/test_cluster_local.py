"""Cluster pieces that need no Slurm: the step-0 lock across processes, launcher settings
outside the identity, time limits, the dry-run job graph and sbatch scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.spec import RunSpec
from bench.sweep.slurm_time import minutes
from tests.engine_helpers import TINY, bench

ROOT = Path(__file__).resolve().parents[1]


def test_launcher_settings_are_not_part_of_the_identity():
    plain = RunSpec.from_names("voc-15-1", "ft", resolve_data=False)
    slurm = RunSpec.from_names("voc-15-1", "ft", overrides=[
        "launcher=slurm", "launcher.partition=gpu", "launcher.gpus_per_job=4",
        "launcher.time=2-00:00:00", "runs_root=/elsewhere", "device=cpu"], resolve_data=False)
    assert slurm.execution.launcher["executor"] == "slurm"
    assert plain.execution.launcher["executor"] == "local"
    assert plain.run_hash == slurm.run_hash and plain.inputs == slurm.inputs


@pytest.mark.parametrize(("text", "expected"), [
    ("30", 30), ("90:30", 91), ("4:00:00", 240), ("1-0", 1440), ("1-2:30", 1590),
    ("0-0:0:59", 1),
])
def test_slurm_time_forms_become_minutes(text, expected):
    assert minutes(text) == expected


@pytest.mark.parametrize("text", ["forever", "0", "1:2:3:4", ""])
def test_bad_time_limits_are_user_errors(text):
    with pytest.raises(BenchError):
        minutes(text)


def test_two_processes_needing_the_same_step0_train_it_once(tmp_path):
    """voc-15-1 and voc-15-5 share step 0: started together, one trains it under the lock and
    the other waits, then reuses the finished checkpoint (never a half-written one)."""
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    env = {**os.environ, "CSS_BENCH_CACHE": str(cache), "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    bench("config", "--protocol", "voc-15-1", "--method", "ft", *TINY, runs_root=runs,
          cache=cache)  # generates the synthetic data once, before the race
    processes = [subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", "--protocol", protocol, "--method", "ft",
         "--steps", "0", "--quiet", "--runs-root", str(runs), *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        for protocol in ("voc-15-1", "voc-15-5")]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    step0 = [json.loads(p.read_text()) for p in runs.glob("voc-*/ft/seed0-*/step0/record.json")]
    assert sorted(r["step0_cache"]["reused"] for r in step0) == [False, True]
    assert step0[0]["confusion_matrix"] == step0[1]["confusion_matrix"]
    assert len(list((runs / "_step0").glob("*/done"))) == 1
    assert sum("reusing the shared step-0 model" in output for output in outputs) == 1


def test_dry_run_prints_the_job_graph_and_sbatch_scripts_without_submitting(tmp_path):
    result = bench("sweep", "--protocols", "voc-15-1,voc-15-5", "--methods", "ft,lwf-mc",
                   "--seeds", "0", "--executor", "slurm", "--partition", "gpu",
                   "--gpus-per-job", "2", "--time", "2:00:00", "--dry-run", *TINY,
                   runs_root=tmp_path / "runs", cache=tmp_path / "cache")
    out = result.stdout
    assert "4 runs: 0 done, 0 with a live job, 4 to submit (slurm executor)" in out
    # ft shares one step 0 across both protocols; lwf-mc has its own step-0 recipe
    assert "phase A: 1 array of 2 step-0 job(s)" in out
    assert "phase B: 2 array(s), 4 run job(s)" in out
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --gpus-per-node=2" in out
    assert "#SBATCH --ntasks-per-node=2" in out and "#SBATCH --time=120" in out
    assert "#SBATCH --dependency='afterok:<A>_0'" in out
    assert "#SBATCH --kill-on-invalid-dep=yes" in out
    assert not (tmp_path / "runs" / "_sweeps").exists()


def test_sweep_argument_errors_are_one_line(tmp_path):
    result = bench("sweep", "--protocols", "voc-15-1", "--methods", "ft", "--seeds", "a,b",
                   runs_root=tmp_path, cache=tmp_path / "cache", check=False)
    assert result.returncode == 2 and "is not a comma-separated list of integers" in result.stderr
    result = bench("status", "nope", runs_root=tmp_path, cache=tmp_path / "cache", check=False)
    assert result.returncode == 2 and "no sweep manifest 'nope'" in result.stderr
