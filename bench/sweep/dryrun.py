"""`bench sweep --dry-run`: the job graph and the sbatch scripts, with nothing submitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import submitit

from bench.sweep.executor import parameters
from bench.sweep.plan import Plan


def _sbatch(launcher: dict[str, Any], folder: Path, count: int, dependency: str | None) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(**parameters(launcher))
    if dependency:
        executor.update_parameters(slurm_additional_parameters={
            "dependency": dependency, "kill-on-invalid-dep": "yes"})
    inner = executor._executor
    return _make_sbatch_string(command=inner._submitit_command_str, folder=inner.folder,
                               map_count=count, **inner.parameters)


def describe(plan: Plan, launcher: dict[str, Any], folder: Path, skip: set[str]) -> str:
    """The job graph (and, for Slurm, each array's sbatch script) as text."""
    todo = [run for run in plan.pending() if run.run_dir not in skip]
    wanted = {run.run_dir for run in todo}
    step0 = [job for job in plan.step0_jobs if any(r.run_dir in wanted for r in job.runs)]
    lines = [f"{len(plan.runs)} runs: {len(plan.runs) - len(plan.pending())} done, "
             f"{len(plan.pending()) - len(todo)} with a live job, {len(todo)} to submit "
             f"({launcher['executor']} executor)"]
    lines.append(f"phase A: 1 array of {len(step0)} step-0 job(s)" if step0 else
                 "phase A: none (every needed step 0 is done)")
    for index, job in enumerate(step0):
        lines.append(f"  A[{index}] step 0 {job.key}: "
                     + ", ".join(r.label for r in job.runs if r.run_dir in wanted))
    index_of = {job.key: index for index, job in enumerate(step0)}
    groups: dict[int | None, list[str]] = {}
    for run in todo:
        groups.setdefault(index_of.get(run.step0_key), []).append(run.label)
    lines.append(f"phase B: {len(groups)} array(s), {len(todo)} run job(s)")
    for index, labels in groups.items():
        after = f"after A[{index}] (afterok:<A>_{index})" if index is not None else "no dependency"
        lines.append(f"  {after}: " + ", ".join(labels))
    if launcher["executor"] == "slurm":
        if step0:
            lines += ["", "# --- sbatch script of phase A ---",
                      _sbatch(launcher, folder, len(step0), None)]
        for index, labels in groups.items():
            dependency = f"afterok:<A>_{index}" if index is not None else None
            lines += ["", f"# --- sbatch script of a phase-B array ({len(labels)} jobs) ---",
                      _sbatch(launcher, folder, len(labels), dependency)]
    return "\n".join(lines)
