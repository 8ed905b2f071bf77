"""submitit executors from the `launcher` config, and checks made before submitting anything.

The checks ask Slurm itself (`sbatch --test-only`), so an unknown partition or an invalid time
shows Slurm's own message, and an unreachable controller or a missing `sbatch` fails before the
first job exists: a sweep is submitted whole or not at all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from bench.errors import BenchError
from bench.sweep.slurm_time import minutes

EXECUTORS = ("slurm", "local", "debug")
# the job must import the code that planned it (e.g. a git worktree), not another install
CODE_ROOT = str(Path(__file__).resolve().parents[2])


def tasks_per_job(launcher: dict[str, Any]) -> int:
    gpus = int(launcher.get("gpus_per_job") or 0)
    return int(launcher.get("tasks_per_job") or max(gpus, 1))


def parameters(launcher: dict[str, Any]) -> dict[str, Any]:
    """submitit parameters (AutoExecutor names) for one job of this launcher."""
    gpus = int(launcher.get("gpus_per_job") or 0)
    params: dict[str, Any] = {
        "timeout_min": minutes(launcher["time"]),
        "tasks_per_node": tasks_per_job(launcher),
        "nodes": 1,
        "cpus_per_task": int(launcher.get("cpus_per_task") or 1),
        "slurm_setup": [f"export PYTHONPATH={CODE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
        "name": "css-bench",
    }
    if gpus:
        params["gpus_per_node"] = gpus
    if launcher.get("mem_gb"):
        params["mem_gb"] = int(launcher["mem_gb"])
    if launcher.get("partition"):
        params["slurm_partition"] = str(launcher["partition"])
    return params


def make_executor(launcher: dict[str, Any], folder: Path) -> submitit.AutoExecutor:
    executor_name = launcher["executor"]
    if executor_name not in EXECUTORS:
        raise BenchError(f"unknown executor {executor_name!r}; use one of {', '.join(EXECUTORS)}")
    executor = submitit.AutoExecutor(
        folder=str(folder), cluster=executor_name, slurm_python=sys.executable,
        slurm_max_num_timeout=int(launcher.get("max_num_timeout", 3)))
    params = parameters(launcher)
    if executor_name != "slurm":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    return executor


# sbatch's words when it could not reach a controller (as opposed to refusing the jobs)
_UNREACHABLE = ("unable to contact slurm controller", "could not establish a configuration",
                "fetch_config", "connection refused", "socket timed out", "zero bytes were",
                "unable to establish", "no such file or directory", "slurm_conf",
                "communication connection failure", "invalid user for slurmuser")


@dataclass(frozen=True)
class SlurmAnswer:
    """What `sbatch --test-only` said: accepted, refused (Slurm's words), or not asked (why)."""

    accepted: bool
    asked: bool
    message: str


def ask_slurm(launcher: dict[str, Any]) -> SlurmAnswer:
    """Ask Slurm (`sbatch --test-only`, nothing is submitted) whether it accepts these jobs."""
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        return SlurmAnswer(False, False, f"{' and '.join(missing)} not on PATH: this machine "
                                         "has no Slurm client")
    command = ["sbatch", "--test-only", f"--time={launcher['time']}",
               f"--ntasks-per-node={tasks_per_job(launcher)}",
               f"--cpus-per-task={int(launcher.get('cpus_per_task') or 1)}"]
    if launcher.get("partition"):
        command.append(f"--partition={launcher['partition']}")
    if int(launcher.get("gpus_per_job") or 0):
        command.append(f"--gpus-per-node={int(launcher['gpus_per_job'])}")
    try:
        result = subprocess.run([*command, "--wrap", "true"], capture_output=True, text=True,
                                timeout=90)
    except subprocess.TimeoutExpired:
        return SlurmAnswer(False, False, "Slurm did not answer `sbatch --test-only` within 90 s; "
                                         "is the controller up (scontrol ping) and SLURM_CONF "
                                         "right?")
    except OSError as error:
        return SlurmAnswer(False, False, f"sbatch could not be run ({error.strerror})")
    message = " ".join(line.strip() for line in result.stderr.strip().splitlines()
                       if line.strip()) or f"exit status {result.returncode}"
    if result.returncode == 0:
        return SlurmAnswer(True, True, message)
    if any(words in message.lower() for words in _UNREACHABLE):
        return SlurmAnswer(False, False, f"no Slurm controller could be reached ({message}); "
                                         "is it up (scontrol ping) and SLURM_CONF right?")
    return SlurmAnswer(False, True, message)


def check_slurm(launcher: dict[str, Any]) -> None:
    """Fail with Slurm's own words if it would refuse these jobs, or could not be asked
    (nothing is submitted)."""
    answer = ask_slurm(launcher)
    if answer.accepted:
        minutes(launcher["time"])  # after Slurm: its own words for a time it refuses
        return
    if answer.asked:
        raise BenchError(f"Slurm refuses these jobs: {answer.message}")
    raise BenchError(f"cannot submit to Slurm: {answer.message}; nothing was submitted (use "
                     "--executor local to run on this machine)")
