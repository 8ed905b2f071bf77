"""What the scheduler and submitit's files say about a job: live or not, state, error, logs.

Slurm's state alone is not trusted for success (a job whose Python raised can end COMPLETED);
the store's `done` markers say what finished, and submitit's result pickle holds the exception.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from submitit.core.utils import JobPaths

LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
               "SUSPENDED", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


@dataclass
class JobInfo:
    job_id: str
    state: str  # a Slurm state, LIVE / ENDED for local jobs, or UNKNOWN
    error: str | None  # the last line of the exception the job's code raised
    log: Path  # stderr of task 0

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES or self.state == "LIVE"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """job id (`123` or `123_4`) -> state, from squeue (live jobs) then sacct (ended ones)."""
    states: dict[str, str] = {}
    if not job_ids or shutil.which("squeue") is None:
        return states
    queue = _run(["squeue", "-h", "-r", "-o", "%i|%T"])
    for line in queue.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    missing = [j for j in job_ids if j not in states]
    if missing and shutil.which("sacct") is not None:
        accounted = _run(["sacct", "-n", "-X", "--parsable2", "-o", "JobID,State",
                          "-j", ",".join(missing)])
        for line in accounted.splitlines():
            job, _, state = line.partition("|")
            if job.strip() in missing:
                states[job.strip()] = state.split()[0] if state.strip() else "UNKNOWN"
    return states


def _run(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout if result.returncode == 0 else ""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie counts as gone (`kill -0` succeeds on zombies)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def job_error(folder: Path, job_id: str) -> str | None:
    """The exception a job's code raised, from submitit's result pickle (None if none)."""
    path = JobPaths(folder, job_id, task_id=0).result_pickle
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            outcome, payload = pickle.load(handle)
    except Exception:  # a half-written or foreign pickle says nothing reliable
        return None
    if outcome != "error":
        return None
    lines = [line for line in str(payload).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "the job raised an error"


def describe(executor: str, folder: Path, job_ids: list[str]) -> dict[str, JobInfo]:
    """JobInfo for each job id of one sweep."""
    if executor == "slurm":
        states = slurm_states(job_ids)
    else:  # a local job's id is its process id
        states = {j: "LIVE" if j.isdigit() and pid_alive(int(j)) else "ENDED" for j in job_ids}
    if executor == "debug":
        states = dict.fromkeys(job_ids, "ENDED")
    return {j: JobInfo(j, states.get(j, "UNKNOWN"), job_error(folder, j),
                       JobPaths(folder, j, task_id=0).stderr) for j in job_ids}

