"""Per-run progress of a sweep, from the store's `done` markers first and the scheduler second.

A run is done when every step has its `done` marker, whatever Slurm says; a run that is not done
and whose job (or step-0 job) has ended shows the exception its code raised and the log path. A
run whose spec resolves differently with today's code is stale, whatever it has finished.

A run that is not done shows its elapsed time (the recorded seconds of its finished steps and
those of the current step's finished epochs, plus the time since the last epoch ended while its
job runs) and an estimate of the time left: the current step's remaining iterations at its
measured seconds per iteration, and each later step at the mean duration of the steps >= 1
finished so far (before any has finished: the current step's projected duration, when it is a
step >= 1; unknown while step 0 trains).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.spec import stale_reason
from bench.store.runs import RunDir, RunStore
from bench.sweep.jobstate import JobInfo, describe


def _run_dir(run: dict[str, Any]) -> RunDir:
    return RunStore(run["runs_root"]).run(run["protocol"], run["method"], int(run["seed"]),
                                          run["run_hash"])


def done_steps(run: dict[str, Any]) -> int:
    return len(_run_dir(run).done_steps(int(run["num_steps"])))


def _step_seconds(record: dict[str, Any]) -> float:
    cost = record.get("cost") or record.get("timings") or {}
    return float(cost.get("train_seconds") or 0) + float(cost.get("eval_seconds") or 0)


def timing(run_dir: RunDir, num_steps: int, live: bool,
           now: float | None = None) -> dict[str, float | None]:
    """{elapsed, left} in seconds for a run that is not done (left None: not known yet)."""
    now = time.time() if now is None else now
    elapsed, incremental = 0.0, []
    done = run_dir.done_steps(num_steps)
    for step in done:
        try:
            seconds = _step_seconds(run_dir.record(step))
        except BenchError:
            continue
        elapsed += seconds
        if step > 0:
            incremental.append(seconds)
    current = next((s for s in range(num_steps) if s not in done), None)
    if current is None:
        return {"elapsed": elapsed, "left": 0.0}
    progress = run_dir.read_progress(current)
    left_now: float | None = None
    projected: float | None = None
    if progress and int(progress.get("iteration") or 0) > 0:
        since = max(0.0, now - float(progress.get("updated") or now)) if live else 0.0
        spent = float(progress.get("train_seconds") or 0)
        per_iteration = spent / int(progress["iteration"])
        projected = per_iteration * int(progress.get("iterations") or 0)
        elapsed += spent + since
        left_now = max(0.0, projected - spent - since)
    later = num_steps - current - 1
    if later == 0:
        left_later: float | None = 0.0
    elif incremental:
        left_later = later * sum(incremental) / len(incremental)
    elif current > 0 and projected is not None:
        left_later = later * projected
    else:
        left_later = None
    left = None if left_now is None or left_later is None else left_now + left_later
    return {"elapsed": elapsed, "left": left}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return f"{seconds:.0f}s"
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def rows(content: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: label, steps done, total, state, error and log (when it failed)."""
    ids = [r["job_id"] for r in content["runs"]] + [j["job_id"] for j in content["step0_jobs"]]
    jobs = describe(content["executor"], Path(content["folder"]), [i for i in ids if i])
    for job_id, error in content.get("errors", {}).items():  # debug jobs: kept by the sweep
        if job_id in jobs and not jobs[job_id].error:
            jobs[job_id].error = error
    result = []
    for run in content["runs"]:
        done, total = done_steps(run), int(run["num_steps"])
        job: JobInfo | None = jobs.get(run["job_id"])
        step0: JobInfo | None = jobs.get(run["step0_job_id"]) if run["step0_job_id"] else None
        row = {"run": f"{run['protocol']}/{run['method']}/seed{run['seed']}", "done": done,
               "total": total, "job": run["job_id"], "state": "", "error": None, "log": None,
               "elapsed": None, "left": None}
        stale = stale_reason(run.get("spec"))
        if stale:
            row.update(state="stale", error=f"today's resolution differs ({stale}); submit "
                                            "the sweep again for a current run")
        elif done == total:
            row["state"] = "done"
        elif job is not None and job.error:
            row.update(state="failed", error=job.error, log=str(job.log))
        elif step0 is not None and step0.error and done == 0:
            row.update(state="step-0 job failed", error=step0.error, log=str(step0.log))
        elif job is not None and job.live:
            row["state"] = job.state.lower() if job.state != "LIVE" else "running"
            if row["state"] == "running":
                row.update(timing(_run_dir(run), total, live=True))
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
