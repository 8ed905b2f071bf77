"""What runs and table cells cost, in device-hours (GPU-hours on GPUs), from the records.

Every record holds its cost (`bench.store.records.step_cost`): training and evaluation wall
seconds x the devices of the job. A step 0 reused from the shared cache cost nothing to the run
that reused it; its record names the cache entry and what training it cost (`paid_by`).

- A run's cost: the step 0 it uses (whoever trained it) plus its steps >= 1; and, apart, what
  the run itself paid (0 for a reused step 0).
- A table cell (one configuration over its seeds): the sum over its runs. Within a cell every
  seed has its own step 0, so each is counted once.
- A section's total (one protocol on one data set): every run's steps >= 1 plus each distinct
  step-0 model once, however many methods share it (methods naming the same step-0 recipe
  share one per seed). That is what the section cost to produce, and what the tables say.

A record written before costs were recorded has none: its run's cost is unknown (NaN), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bench.report.aggregate import Run, StepRecord

RUN_COLUMNS = [
    "data_kind", "data", "protocol", "method", "variant", "recipe", "setup_hash", "status",
    "seed", "run_hash", "device", "device_count", "step0_key", "step0_trained_here",
    "step0_device_hours", "incremental_device_hours", "device_hours", "paid_device_hours",
    "train_images_per_second", "run",
]  # fmt: skip
CELL_KEYS = ["data_kind", "data", "protocol", "method", "variant", "recipe", "setup_hash",
             "status"]


def step_device_hours(record: StepRecord) -> float:
    """What the step's result cost to produce: its own device-hours, or for a reused step 0 the
    cache entry's (NaN when not recorded)."""
    cost = record.cost
    if not cost:
        return math.nan
    paid_by = cost.get("paid_by")
    if paid_by:
        hours = paid_by.get("device_hours")
        return math.nan if hours is None else float(hours)
    hours = cost.get("device_hours")
    return math.nan if hours is None else float(hours)


def paid_device_hours(record: StepRecord) -> float:
    """What this run itself spent on the step (0 for a reused step 0)."""
    if not record.cost or record.cost.get("device_hours") is None:
        return math.nan
    return float(record.cost["device_hours"])


def step0_key(record: StepRecord) -> str | None:
    return (record.step0_cache or {}).get("key")


def _device(records: Sequence[StepRecord]) -> tuple[str, int]:
    for record in records:
        device = (record.cost or {}).get("device") or {}
        if record.cost and not record.cost.get("paid_by") and device:
            return str(device.get("name", "")), int(device.get("count", 0))
    for record in records:
        device = (record.cost or {}).get("device") or {}
        if device:
            return str(device.get("name", "")), int(device.get("count", 0))
    return "not recorded", 0


def run_costs(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: the step 0 it used and what that cost, its steps >= 1, the total, and
    what the run itself paid."""
    rows = []
    for run in runs:
        records = sorted(run.steps, key=lambda s: s.step)
        first = next((r for r in records if r.step == 0), None)
        later = [r for r in records if r.step > 0]
        incremental = sum(step_device_hours(r) for r in later) if later else 0.0
        step0_hours = step_device_hours(first) if first is not None else math.nan
        device, count = _device(records)
        seconds = sum(float((r.cost or {}).get("train_seconds") or 0) for r in records)
        images = sum(int((r.cost or {}).get("train_images") or 0) for r in records)
        rows.append({
            "data_kind": run.data_kind, "data": run.data, "protocol": run.protocol["name"],
            "method": run.method, "variant": run.variant, "recipe": run.recipe,
            "setup_hash": run.setup_hash, "status": run.status, "seed": run.seed,
            "run_hash": run.run_hash, "device": device, "device_count": count,
            "step0_key": step0_key(first) if first is not None else None,
            "step0_trained_here": bool(first is not None and first.cost
                                       and not first.cost.get("paid_by")),
            "step0_device_hours": step0_hours, "incremental_device_hours": incremental,
            "device_hours": step0_hours + incremental,
            "paid_device_hours": sum(paid_device_hours(r) for r in records),
            "train_images_per_second": images / seconds if seconds > 0 else math.nan,
            "run": str(run.run_dir),
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def cell_costs(run_table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (over its seeds): device-hours of step 0 (each distinct step-0
    model once), of the steps >= 1, the total, and per seed."""
    rows = []
    for group, frame in run_table.groupby(CELL_KEYS, sort=True, dropna=False):
        row = dict(zip(CELL_KEYS, group, strict=True))
        step0 = _distinct_step0_hours(frame)
        incremental = float(frame["incremental_device_hours"].sum(min_count=1))
        row.update({
            "n": int(frame["seed"].nunique()),
            "seeds": ",".join(str(s) for s in sorted(frame["seed"].unique())),
            "device": ", ".join(sorted(set(frame["device"]))),
            "step0_device_hours": step0, "incremental_device_hours": incremental,
            "device_hours": step0 + incremental,
            "device_hours_per_seed": (step0 + incremental) / max(int(frame["seed"].nunique()),
                                                                  1),
        })
        rows.append(row)
    columns = [*CELL_KEYS, "n", "seeds", "device", "step0_device_hours",
               "incremental_device_hours", "device_hours", "device_hours_per_seed"]
    return pd.DataFrame(rows, columns=columns)


def _distinct_step0_hours(frame: pd.DataFrame) -> float:
    """Device-hours of the distinct step-0 models the runs use, each counted once (a run
    without a step-0 key counts its own)."""
    seen: dict[str, float] = {}
    total = 0.0
    for _, row in frame.iterrows():
        key = row["step0_key"]
        if isinstance(key, str) and key:
            seen[key] = row["step0_device_hours"]
        else:
            total += row["step0_device_hours"]
    return total + sum(seen.values())


def section_totals(run_table: pd.DataFrame) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (data kind, data, protocol): the total device-hours with each shared step 0 counted
    once, the total if every run paid its own step 0, and how many step-0 models there are."""
    totals = {}
    for key, frame in run_table.groupby(["data_kind", "data", "protocol"], sort=True):
        step0 = _distinct_step0_hours(frame)
        incremental = float(frame["incremental_device_hours"].sum(min_count=1))
        keys = {k for k in frame["step0_key"] if isinstance(k, str) and k}
        totals[key] = {
            "device_hours": step0 + incremental,
            "per_run_sum": float(frame["device_hours"].sum(min_count=1)),
            "step0_models": len(keys), "runs": len(frame),
            "devices": sorted(set(frame["device"])),
        }
    return totals


def hours(value: float | None) -> str:
    """Device-hours for a table: 3 significant digits (CPU runs of the embedded data cost
    thousandths of an hour), a dash when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def total_note(total: dict[str, Any]) -> str:
    """One sentence: the section's cost, the shared step 0 counted once, and so said."""
    if math.isnan(total["device_hours"]):
        return (f"cost: not known for the {total['runs']} run(s) of this section (some records "
                "were written before costs were recorded).")
    devices = ", ".join(total["devices"])
    saved = total["per_run_sum"] - total["device_hours"]
    return (f"cost: {hours(total['device_hours'])} device-hours for the {total['runs']} run(s) "
            f"of this section on {devices}, each of the {total['step0_models']} shared step-0 "
            f"model(s) counted once (counted in every run that uses it: "
            f"{hours(total['per_run_sum'])}"
            + (f", {hours(saved)} more)" if saved > 0 else ")")
            + "; device-hours = wall hours x devices (GPU-hours on GPUs).")


CELL_HEADERS = ["method", "recipe", "config", "status", "n", "step 0", "steps >= 1", "total",
                "per seed", "device"]


def cost_markdown(cells: pd.DataFrame, totals: dict[tuple[str, str, str], dict[str, Any]],
                  roots: Sequence[str]) -> str:
    """`cost.md`: device-hours per table cell, one section per (data, protocol)."""
    from bench.report.formats import markdown_table, method_key, method_label

    lines = ["# Cost per table cell, in device-hours", "",
             "device-hours = wall hours of training and evaluation x the devices of the job "
             "(GPU-hours on GPUs). A cell is one configuration over its seeds. step 0 = the "
             "step-0 models its runs use (each once; shared with the other methods of the same "
             "step-0 recipe, whoever trained it); steps >= 1 = the cell's own. A section's "
             "total counts each shared step-0 model once.", "",
             "Runs roots: " + ", ".join(f"`{r}`" for r in roots), ""]
    for (kind, data, protocol), frame in cells.groupby(["data_kind", "data", "protocol"],
                                                       sort=True):
        lines += [f"## {protocol} on {data} ({kind} data)", ""]
        if (kind, data, protocol) in totals:
            lines += [f"- {total_note(totals[(kind, data, protocol)])}", ""]
        ordered = frame.assign(_m=[method_key(m) for m in frame["method"]]).sort_values(
            ["status", "_m", "recipe", "setup_hash"], kind="stable")
        rows = [[method_label(r["method"], r["variant"]), r["recipe"], r["setup_hash"],
                 r["status"], str(r["n"]), hours(r["step0_device_hours"]),
                 hours(r["incremental_device_hours"]), hours(r["device_hours"]),
                 hours(r["device_hours_per_seed"]), r["device"]]
                for _, r in ordered.iterrows()]
        lines += markdown_table(CELL_HEADERS, rows, ["l", "l", "l", "l", "r", "r", "r", "r",
                                                     "r", "l"]) + [""]
    return "\n".join(lines).rstrip() + "\n"
