"""`bench sweep --dry-run`: the job graph and the sbatch scripts, with nothing submitted."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

from bench.sweep.executor import parameters
from bench.sweep.plan import Plan


class _ScriptWriter(SlurmExecutor):
    """submitit's Slurm executor, used only to write sbatch scripts: writing text needs no
    `srun` on this machine, so its availability check is skipped (nothing is submitted)."""

    @classmethod
    def affinity(cls) -> int:
        return 1


def _sbatch(launcher: dict[str, Any], folder: Path, count: int, dependency: str | None) -> str:
    """The sbatch script `bench sweep` would submit for an array of `count` jobs."""
    executor = _ScriptWriter(folder=str(folder), python=shlex.quote(sys.executable))
    generic = parameters(launcher)
    executor.update_parameters(**executor._convert_parameters(
        {k.removeprefix("slurm_"): v for k, v in generic.items()}))
    if dependency:
        executor.update_parameters(additional_parameters={
            "dependency": dependency, "kill-on-invalid-dep": "yes"})
    return _make_sbatch_string(command=executor._submitit_command_str, folder=executor.folder,
                               map_count=count, **executor.parameters)


def describe(plan: Plan, launcher: dict[str, Any], folder: Path, skip: set[str]) -> str:
    """The job graph (and, for Slurm, each array's sbatch script) as text."""
    todo = [run for run in plan.pending() if str(run.run_dir.path) not in skip]
    wanted = {run.run_dir.path for run in todo}
    step0 = [job for job in plan.step0_jobs if any(r.run_dir.path in wanted for r in job.runs)]
    lines = [f"{len(plan.runs)} runs: {len(plan.runs) - len(plan.pending())} done, "
             f"{len(plan.pending()) - len(todo)} with a live job, {len(todo)} to submit "
             f"({launcher['executor']} executor)"]
    lines.append(f"phase A: 1 array of {len(step0)} step-0 job(s)" if step0 else
                 "phase A: none (every needed step 0 is done)")
    for index, job in enumerate(step0):
        lines.append(f"  A[{index}] step 0 {job.key}: "
                     + ", ".join(r.label for r in job.runs if r.run_dir.path in wanted))
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
