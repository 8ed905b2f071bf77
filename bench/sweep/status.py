"""Per-run progress of a sweep, from the store's `done` markers first and the scheduler second.

A run is done when every step has its `done` marker, whatever Slurm says; a run that is not done
and whose job (or step-0 job) has ended shows the exception its code raised and the log path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.store import RunStore
from bench.sweep.jobstate import JobInfo, describe


def done_steps(run: dict[str, Any]) -> int:
    store = RunStore(Path(run["run_dir"]).parents[2], run["protocol"], run["method"],
                     int(run["seed"]), run["config_hash"])
    return sum(store.is_done(step) for step in range(int(run["num_steps"])))


def rows(content: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: label, steps done, total, state, error and log (when it failed)."""
    ids = [r["job_id"] for r in content["runs"]] + [j["job_id"] for j in content["step0_jobs"]]
    jobs = describe(content["executor"], Path(content["folder"]), [i for i in ids if i])
    result = []
    for run in content["runs"]:
        done, total = done_steps(run), int(run["num_steps"])
        job: JobInfo | None = jobs.get(run["job_id"])
        step0: JobInfo | None = jobs.get(run["step0_job_id"]) if run["step0_job_id"] else None
        row = {"run": f"{run['protocol']}/{run['method']}/seed{run['seed']}", "done": done,
               "total": total, "job": run["job_id"], "state": "", "error": None, "log": None}
        if done == total:
            row["state"] = "done"
        elif job is not None and job.error:
            row.update(state="failed", error=job.error, log=str(job.log))
        elif step0 is not None and step0.error and done == 0:
            row.update(state="step-0 job failed", error=step0.error, log=str(step0.log))
        elif job is not None and job.live:
            row["state"] = job.state.lower() if job.state != "LIVE" else "running"
        else:
            state = job.state if job is not None else "UNKNOWN"
            log = job.log if job is not None else None
            row.update(state=f"not finished (job {state.lower()})",
                       log=str(log) if log else None)
        result.append(row)
    return result


def live_run_dirs(manifests: list[dict[str, Any]]) -> set[str]:
    """Run directories that an earlier sweep's job (or its step-0 job) still serves."""
    live: set[str] = set()
    for content in manifests:
        ids = [r["job_id"] for r in content["runs"] if r["job_id"]]
        jobs = describe(content["executor"], Path(content["folder"]), ids)
        for run in content["runs"]:
            job = jobs.get(run["job_id"])
            if job is not None and job.live and done_steps(run) < int(run["num_steps"]):
                live.add(run["run_dir"])
    return live
