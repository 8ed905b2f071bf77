"""Per-step old / new / all / hIoU of every run, and their mean and spread over seeds.

Scores are recomputed from each record's confusion matrix with `bench.metrics.step_scores`, in
either metric convention, so a table says which one it uses and never mixes them:

- `sdr`: background counted in old and all (the SDR paper and most later work);
- `mib`: foreground only, background left out of old and all (the MiB paper's Table 1).

Groupings, as in the papers' tables: *old* = the base classes (learned at step 0), *new* = every
class added since step 0, *all* = every class seen. For forgetting curves the per-step view is kept
too: *step_old* = the classes learned before the step, *step_new* = the step's own classes.

Seeds are averaged only within one setup (protocol, method, recipe, config hash without the seed)
and one status: a partial run is never averaged with complete ones, and two configurations of one
method stay two rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.metrics import harmonic_iou, mean_iou, step_scores
from bench.report.aggregate import Run, StepRecord
from bench.report.cost import hours, step_device_hours, total_note
from bench.report.formats import (
    latex_table,
    markdown_table,
    mean_std,
    method_key,
    method_label,
    method_name,
)
from bench.report.statistics import interval
from protocols.protocol import format_ranges

CONVENTIONS: dict[str, bool] = {"sdr": True, "mib": False}  # -> background_in_old_all
CONVENTION_TEXT = {
    "sdr": "background counted in old and all (SDR paper's convention)",
    "mib": "foreground only, background left out of old and all (MiB paper's convention)",
}
METRICS = ("old", "new", "all", "hiou", "step_old", "step_new")
SUMMARY_STATISTICS = ("mean", "std", "n", "ci_low", "ci_high")
SETUP_KEYS = ["data_kind", "data", "protocol", "dataset", "setting", "mode", "method", "variant",
              "recipe", "setup_hash", "status"]
DATA_KIND_ORDER = {"real": 0, "synthetic": 1, "unknown": 2}


def conventions_of(choice: str) -> list[str]:
    return list(CONVENTIONS) if choice == "both" else [choice]


def channel_groups(protocol: dict[str, Any], eval_step: int) -> dict[str, list[int]]:
    """Model channels of each group after `eval_step` (channels = positions in class_order)."""
    bounds = [0]
    for size in protocol["step_sizes"]:
        bounds.append(bounds[-1] + size)
    start, end = bounds[eval_step], bounds[eval_step + 1]
    return {
        "base": list(range(bounds[1])),
        "added": list(range(bounds[1], end)),
        "previous": list(range(start)),
        "this_step": [c for c in range(start, end) if c != 0],
    }


def _scores_from_iou(iou: Any, old: list[int], new: list[int],
                     background_in_old_all: bool) -> tuple[float, float, float, float]:
    """step_scores' grouping on stored per-class IoU, for older records without a matrix."""
    if not background_in_old_all:
        old = [c for c in old if c != 0]
    old_score, new_score = 100.0 * mean_iou(iou, old), 100.0 * mean_iou(iou, new)
    return old_score, new_score, 100.0 * mean_iou(iou, old + new), harmonic_iou(old_score,
                                                                               new_score)


def step_metrics(record: StepRecord, protocol: dict[str, Any],
                 convention: str) -> dict[str, float]:
    """Old / new / all / hIoU and the per-step old / new of one record, in %."""
    background = CONVENTIONS[convention]
    groups = channel_groups(protocol, record.eval_step)
    width = record.iou.numel()
    for name, channels in groups.items():
        if channels and max(channels) >= width:
            groups[name] = [c for c in channels if c < width]
    pairs = {"paper": (groups["base"], groups["added"]),
             "step": (groups["previous"], groups["this_step"])}
    values: dict[str, tuple[float, float, float, float]] = {}
    for name, (old, new) in pairs.items():
        if record.matrix is not None:
            scores = step_scores(record.matrix, old, new, background)
            values[name] = (scores.old, scores.new, scores.all, scores.hiou)
        else:
            values[name] = _scores_from_iou(record.iou, old, new, background)
    old, new, all_, hiou = values["paper"]
    return {"old": old, "new": new, "all": all_, "hiou": hiou,
            "step_old": values["step"][0] if record.eval_step else math.nan,
            "step_new": values["step"][1]}


def _class_ranges(protocol: dict[str, Any], eval_step: int, convention: str) -> tuple[str, str]:
    order = protocol["class_order"]
    groups = channel_groups(protocol, eval_step)
    old = [order[c] for c in groups["base"] if CONVENTIONS[convention] or order[c] != 0]
    new = [order[c] for c in groups["added"]]
    return format_ranges(old), format_ranges(new)


def scores_table(runs: Sequence[Run], conventions: Sequence[str]) -> pd.DataFrame:
    """One row per (convention, run, step record) with the step's scores."""
    rows = []
    for convention in conventions:
        for run in runs:
            spent = 0.0  # device-hours to reach the step: its step 0 (whoever paid) and after
            for record in sorted(run.steps, key=lambda s: s.step):
                spent += step_device_hours(record)
                old_classes, new_classes = _class_ranges(run.protocol, record.eval_step,
                                                         convention)
                rows.append({
                    "convention": convention, "data_kind": run.data_kind, "data": run.data,
                    "protocol": run.protocol["name"],
                    "dataset": run.protocol.get("dataset", "unknown"),
                    "setting": run.protocol.get("setting", "unknown"),
                    "mode": run.protocol.get("mode", "unknown"), "method": run.method,
                    "variant": run.variant, "recipe": run.recipe,
                    "setup_hash": run.setup_hash, "status": run.status,
                    "seed": run.seed, "run_hash": run.run_hash,
                    "protocol_steps": len(run.protocol["step_sizes"]), "step": record.eval_step,
                    "stored_step": record.step, "step_done": record.done,
                    "old_classes": old_classes, "new_classes": new_classes,
                    **step_metrics(record, run.protocol, convention),
                    "device_hours": spent,
                })
    columns = ["convention", *SETUP_KEYS[:-1], "status", "seed", "run_hash",
               "protocol_steps", "step",
               "stored_step", "step_done", "old_classes", "new_classes", *METRICS,
               "device_hours"]
    return pd.DataFrame(rows, columns=columns)


def seed_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof 1), number of seeds and the 95 % Student-t interval
    of the mean per setup and step."""
    keys = ["convention", *SETUP_KEYS, "step"]
    rows = []
    for group, frame in scores.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, group, strict=True))
        row["n"] = int(frame["seed"].nunique())
        row["seeds"] = ",".join(str(s) for s in sorted(frame["seed"].unique()))
        row["run_hashes"] = ",".join(sorted(frame["run_hash"].unique()))
        row["old_classes"] = frame["old_classes"].iloc[0]
        row["new_classes"] = frame["new_classes"].iloc[0]
        for metric in METRICS:
            summary = interval(frame[metric].tolist())
            row[f"{metric}_mean"], row[f"{metric}_std"] = summary.mean, summary.std
            row[f"{metric}_n"] = summary.n
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = summary.low, summary.high
        spent = frame["device_hours"]  # known for every seed, or not shown
        row["device_hours_mean"] = (float(spent.mean()) if len(spent) and spent.notna().all()
                                    else math.nan)
        rows.append(row)
    columns = [*keys, "n", "seeds", "run_hashes", "old_classes", "new_classes",
               *[f"{m}_{s}" for m in METRICS for s in SUMMARY_STATISTICS],
               "device_hours_mean"]
    summary = pd.DataFrame(rows, columns=columns)
    variants = summary.groupby(["convention", "data_kind", "data", "protocol", "method",
                                "status"])["setup_hash"].transform("nunique")
    summary["configs_of_method"] = variants.astype(int) if len(summary) else variants
    return summary


def _ordered_sections(summary: pd.DataFrame) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    sections = []
    for (kind, data, protocol), frame in summary.groupby(["data_kind", "data", "protocol"],
                                                         sort=True):
        sections.append(((kind, data, protocol), frame))
    return sorted(sections, key=lambda s: (DATA_KIND_ORDER.get(s[0][0], 9), s[0][1], s[0][2]))


def _section_rows(frame: pd.DataFrame) -> list[list[str]]:
    ordered = frame.assign(_m=[method_key(m) for m in frame["method"]]).sort_values(
        ["_m", "recipe", "setup_hash", "step"], kind="stable")
    rows = []
    for _, row in ordered.iterrows():
        cells = [method_label(row["method"], row["variant"]), row["recipe"], row["setup_hash"],
                 str(row["step"])]
        for metric in ("old", "new", "all", "hiou"):
            cells.append(mean_std(row[f"{metric}_mean"], row[f"{metric}_std"],
                                  row[f"{metric}_n"], interval=(row[f"{metric}_ci_low"],
                                                                row[f"{metric}_ci_high"])))
        cells += [hours(row["device_hours_mean"]), str(row["n"]), row["seeds"]]
        rows.append(cells)
    return rows


STATUS_TITLES = {
    "complete": "",
    "partial": "Partial runs (not finished; not comparable with the complete ones):",
    "stale": "Stale runs (their spec resolves differently with today's code; rerun them):",
}
HEADERS = ["method", "recipe", "config", "step", "old", "new", "all", "hIoU", "device-h", "n",
           "seeds"]
ALIGN = ["l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "l"]
COST_NOTE = ("device-h = device-hours per seed to reach the step (mean over seeds; GPU-hours on "
             "GPUs), its step 0 included in full even where it is shared; \"-\" where a record "
             "holds no cost (written before costs were recorded).")


def _data_title(kind: str, data: str) -> str:
    if kind == "synthetic":
        return f"{data}: embedded synthetic data, not comparable with real-data numbers"
    if kind == "unknown":
        return f"{data}: data set not recorded, not comparable with real-data numbers"
    return f"{data} (real data)"


def _run_hashes(group: pd.DataFrame, setup: str) -> str:
    """The run config hashes (seed included) behind one seedless configuration."""
    joined = ",".join(group[group["setup_hash"] == setup]["run_hashes"])
    return ", ".join(sorted(set(joined.split(","))))


def _section_notes(frame: pd.DataFrame, total: dict[str, Any] | None = None) -> list[str]:
    notes = []
    last = frame.sort_values("step").iloc[-1]
    notes.append(f"old = {last['old_classes']}, new = classes added since step 0 (after step "
                 f"{last['step']}: {last['new_classes'] or 'none'}); recipe = trainer recipe; "
                 "config = config hash without the seed.")
    notes.append(COST_NOTE + (" Section " + total_note(total) if total else ""))
    for (method, status), group in frame.groupby(["method", "status"], sort=True):
        hashes = sorted(group["setup_hash"].unique())
        if len(hashes) > 1:
            runs = "; ".join(f"{h}: run config(s) {_run_hashes(group, h)}" for h in hashes)
            notes.append(f"{method_name(method)} ({status}) has {len(hashes)} configurations "
                         f"({', '.join(hashes)}): shown separately, never averaged together "
                         f"({runs}).")
    return notes


def summary_markdown(summary: pd.DataFrame, convention: str, roots: Sequence[str],
                     costs: dict[tuple[str, str, str], dict[str, Any]] | None = None) -> str:
    """The per-step table of one convention, one section per (data, protocol)."""
    frame = summary[summary["convention"] == convention]
    lines = [f"# Per-step mIoU: {CONVENTION_TEXT[convention]}", "",
             f"Metric convention: `{convention}`, {CONVENTION_TEXT[convention]}. old = base "
             "classes (learned at step 0), new = every class added since, all = every class "
             "seen, hIoU = harmonic mean of old and new. mIoU in %, mean ± sample standard "
             "deviation over seeds [95 % Student-t interval of the mean] (n = number of "
             "seeds). Partial runs (last step not done) and "
             "stale runs (their spec resolves differently with today's code) are listed apart "
             "and never averaged with complete ones.",
             "", "Runs roots: " + ", ".join(f"`{r}`" for r in roots), ""]
    for (kind, data, protocol), section in _ordered_sections(frame):
        mode = section["mode"].iloc[0]
        lines += [f"## {protocol} ({mode}) on {_data_title(kind, data)}", ""]
        total = (costs or {}).get((kind, data, protocol))
        lines += [f"- {note}" for note in _section_notes(section, total)] + [""]
        for status, title in STATUS_TITLES.items():
            part = section[section["status"] == status]
            if len(part):
                lines += [title, ""] if title else []
                lines += markdown_table(HEADERS, _section_rows(part), ALIGN) + [""]
    return "\n".join(lines).rstrip() + "\n"


def summary_latex(summary: pd.DataFrame, convention: str) -> str:
    frame = summary[summary["convention"] == convention]
    lines = [f"% Per-step mIoU (%), {CONVENTION_TEXT[convention]}.",
             "% mean ± sample std over seeds; requires \\usepackage{booktabs}.", ""]
    for (kind, data, protocol), section in _ordered_sections(frame):
        for status in STATUS_TITLES:
            part = section[section["status"] == status]
            if not len(part):
                continue
            caption = (f"{protocol} ({section['mode'].iloc[0]}) on {_data_title(kind, data)}; "
                       f"{status} runs; mIoU in %, {CONVENTION_TEXT[convention]}; old = "
                       f"{part.sort_values('step')['old_classes'].iloc[-1]}")
            lines += latex_table(HEADERS, _section_rows(part), caption, ALIGN) + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_summaries(summary: pd.DataFrame, out: Path, conventions: Sequence[str],
                    roots: Sequence[str],
                    costs: dict[tuple[str, str, str], dict[str, Any]] | None = None
                    ) -> list[Path]:
    """summary_<convention>.{csv,md,tex} for each convention; returns the written paths."""
    written = []
    for convention in conventions:
        frame = summary[summary["convention"] == convention]
        paths = {"csv": out / f"summary_{convention}.csv", "md": out / f"summary_{convention}.md",
                 "tex": out / f"summary_{convention}.tex"}
        frame.to_csv(paths["csv"], index=False, float_format="%.4f")
        paths["md"].write_text(summary_markdown(summary, convention, roots, costs))
        paths["tex"].write_text(summary_latex(summary, convention))
        written += list(paths.values())
    return written
