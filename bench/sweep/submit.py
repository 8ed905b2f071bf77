"""Submitting a planned sweep: phase A (step 0s), phase B (runs), then the manifest.

Phase A is one job array of the unique step-0 jobs. Phase B is one job array per step-0 job,
holding every run that needs it, with `afterok:<A>_<i>` on exactly that array task; runs whose
step 0 is already in the cache go in one array without dependency. One Slurm array carries one
dependency list for all its tasks, and `aftercorr` pairs task i with task i, which cannot express
"runs 0-5 need step-0 task 0, runs 6-11 need task 1"; per-group arrays keep each run waiting
only for its own step 0. `kill-on-invalid-dep` cancels the runs whose step 0 failed instead of
leaving them pending forever. Local and debug executors have no dependencies: the step-0 lock
in the store makes the later jobs wait and reuse.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import submitit

from bench.errors import BenchError
from bench.sweep import manifest
from bench.sweep.executor import CODE_ROOT, check_slurm, make_executor
from bench.sweep.job import RunJob
from bench.sweep.plan import Plan, PlannedRun


def _run_entry(run: PlannedRun, job_id: str | None, step0_job: str | None) -> dict[str, Any]:
    spec = run.spec
    return {"protocol": spec.protocol.name, "method": spec.method, "seed": spec.seed,
            "run_hash": spec.run_hash, "runs_root": str(run.run_dir.runs_root.resolve()),
            "run_dir": str(run.run_dir.path), "num_steps": run.num_steps,
            "step0_key": run.step0_key, "job_id": job_id, "step0_job_id": step0_job,
            "spec": spec.to_dict()}


def _array(executor: submitit.AutoExecutor, jobs: list[RunJob],
           dependency: str | None, slurm: bool) -> list[submitit.Job]:
    if slurm:
        extra = {"dependency": dependency, "kill-on-invalid-dep": "yes"} if dependency else {}
        executor.update_parameters(slurm_additional_parameters=extra)
    with executor.batch():
        submitted = [executor.submit(job) for job in jobs]
    return submitted


def _cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60, check=False)


def submit(plan: Plan, launcher: dict[str, Any], runs_root: str, skip: set[str],
           name: str | None = None,
           extra: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Submit the plan's pending runs (minus `skip`, run dirs with a live job) and write the
    manifest (with `extra` added, e.g. what a reproduction needs for its progress per table).
    Returns its path and content. Nothing stays submitted if a submission fails."""
    executor_name = launcher["executor"]
    slurm = executor_name == "slurm"
    if slurm:
        check_slurm(launcher)
    else:  # local jobs inherit this environment; they must import this code
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (CODE_ROOT, os.environ.get("PYTHONPATH")) if p)
    name = name or manifest.new_name()
    folder = Path(runs_root).resolve() / manifest.SWEEPS_DIR / name / "logs"
    executor = make_executor(launcher, folder)
    todo = [run for run in plan.pending() if str(run.run_dir.path) not in skip]
    wanted = {run.run_dir.path for run in todo}
    step0_jobs = [job for job in plan.step0_jobs
                  if any(r.run_dir.path in wanted for r in job.runs)]
    submitted: list[str] = []
    handles: list[submitit.Job] = []
    runs: list[dict[str, Any]] = []
    phase_a: list[dict[str, Any]] = []
    try:
        a_jobs = (_array(executor, [RunJob(j.spec, [0]) for j in step0_jobs], None, slurm)
                  if step0_jobs else [])
        handles += a_jobs
        a_ids = [str(job.job_id) for job in a_jobs]
        submitted += a_ids
        by_key = {job.key: job_id for job, job_id in zip(step0_jobs, a_ids, strict=True)}
        for job, job_id in zip(step0_jobs, a_ids, strict=True):
            phase_a.append({"key": job.key, "job_id": job_id,
                            "runs": [str(r.run_dir.path) for r in job.runs
                                     if r.run_dir.path in wanted]})
        groups: dict[str | None, list[PlannedRun]] = {}
        for run in todo:
            groups.setdefault(by_key.get(run.step0_key), []).append(run)
        for step0_id, group in groups.items():
            dependency = f"afterok:{step0_id}" if step0_id and slurm else None
            b_jobs = _array(executor, [RunJob(r.spec) for r in group], dependency, slurm)
            handles += b_jobs
            ids = [str(job.job_id) for job in b_jobs]
            submitted += ids
            runs += [_run_entry(r, i, step0_id) for r, i in zip(group, ids, strict=True)]
    except Exception as error:
        if slurm:
            _cancel(sorted({i.split("_")[0] for i in submitted}))
        if isinstance(error, BenchError):
            raise
        raise BenchError(f"submitting the sweep failed, nothing was left submitted: "
                         f"{_first_line(error)}") from None
    content = {
        "name": name, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "executor": executor_name,
        "folder": str(folder), "launcher": launcher, "step0_jobs": phase_a, "runs": runs,
        "skipped": sorted(str(run.run_dir.path) for run in plan.runs
                          if run.run_dir.path not in wanted),
        **(extra or {}),
    }
    path = manifest.write(runs_root, content)
    if executor_name == "debug":  # in-process by design: the jobs run now, in order
        # a debug job leaves no result file: what it raised is kept in the manifest
        errors = {str(handle.job_id): _first_line(error) for handle in handles
                  if (error := handle.exception()) is not None}
        if errors:
            content["errors"] = errors
            path = manifest.write(runs_root, content)
    return path, content


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " ".join(lines[-3:]) if lines else type(error).__name__
