"""`paper_tables.md`: every published number of the SDR paper beside the reproduced one, then
the other sources' (the MiB paper's numbers as quoted, later methods).

A published row (protocol, method, variant, recipe, step, column, convention) is matched with the
seed summary of complete runs of exactly that protocol, method, variant and trainer recipe, scored
in the same metric convention after the same step. Real-data runs fill the main section. Runs on
the embedded synthetic dataset (or whose data set is not recorded) appear only in their own marked
section: they are never comparable with a paper's number, so they never stand in a real-data
column; there they are matched by protocol, method and variant (their recipe is the embedded
one, never a paper's).

The output is a pure function of its inputs: sorted rows, fixed number formats, no timestamps,
no absolute paths beyond the runs roots as given, so regenerating it gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from bench.report.formats import (
    MODE_ORDER,
    markdown_table,
    mean_std,
    method_key,
    method_label,
    number,
    signed,
)
from bench.report.summary import CONVENTION_TEXT

SDR_SOURCE_PREFIX = "SDR paper"
NOT_RUN = "not run"
PARTIAL = "partial"
HEADERS = ["method", "setting", "mode", "step", "column", "convention", "recipe", "published"]
ALIGN = ["l", "l", "l", "r", "l", "l", "l", "r"]
COLUMN_ORDER = {"old": 0, "new": 1, "all": 2}


def _setting_key(setting: str) -> tuple[tuple[int, str], ...]:
    """`15-1` -> ((15, ''), (1, '')); `100-50b` -> ((100, ''), (50, 'b')); `offline` sorts
    after the numbered settings."""
    parts = []
    for part in setting.split("-"):
        digits = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        parts.append((int(digits) if digits else 10**9, part[len(digits):]))
    return tuple(parts)


def _row_order(table: pd.DataFrame) -> pd.DataFrame:
    keys = pd.DataFrame({
        "dataset": table["dataset"],
        "setting": [_setting_key(s) for s in table["setting"]],
        "mode": [MODE_ORDER.index(m) for m in table["mode"]],
        "method": [method_key(m) for m in table["method"]],
        "variant": table["variant"],
        "column": [COLUMN_ORDER[c] for c in table["column"]],
        "convention": table["convention"], "value": table["value"],
    }, index=table.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order]


def _matches(summary: pd.DataFrame, row: pd.Series, kinds: Sequence[str]) -> pd.DataFrame:
    """Complete runs of exactly the row's protocol, method and variant, and on real data its
    recipe (synthetic runs all use the embedded recipe)."""
    found = summary[(summary["convention"] == row["convention"])
                    & (summary["data_kind"].isin(kinds))
                    & (summary["protocol"] == row["protocol"])
                    & (summary["method"] == row["method"])
                    & (summary["variant"] == row["variant"])
                    & (summary["step"] == row["step"])
                    & (summary["status"] == "complete")]
    if "real" in kinds:
        found = found[found["recipe"] == row["recipe"]]
    return found.sort_values(["data", "recipe", "setup_hash"])


PROGRESS_COLUMNS = ["data_kind", "protocol", "method", "variant", "recipe", "seed",
                    "done_steps", "num_steps"]


def run_progress(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run that is neither complete nor stale: how far it got (for the cells whose
    runs are still going: `bench reproduce` fills the tables as its runs finish)."""
    rows = [{"data_kind": run.data_kind, "protocol": run.protocol["name"], "method": run.method,
             "variant": run.variant, "recipe": run.recipe, "seed": run.seed,
             "done_steps": sum(1 for step in run.steps if step.done),
             "num_steps": run.num_steps}
            for run in runs if not run.complete and not run.stale]
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS)


def _partial(progress: pd.DataFrame | None, row: pd.Series, kinds: Sequence[str]) -> str:
    """`k partial run(s) (steps done: 1 of 6, ...)` for the runs of this cell still going (the
    same protocol, method, variant and, on real data, recipe as `_matches`)."""
    if progress is None or progress.empty:
        return ""
    found = progress[progress["data_kind"].isin(kinds)
                     & (progress["protocol"] == row["protocol"])
                     & (progress["method"] == row["method"])
                     & (progress["variant"] == row["variant"])]
    if "real" in kinds:
        found = found[found["recipe"] == row["recipe"]]
    if found.empty:
        return ""
    steps = ", ".join(f"{int(r['done_steps'])} of {int(r['num_steps'])}"
                      for _, r in found.sort_values("seed").iterrows())
    return f"{len(found)} partial run(s) (steps done: {steps})"


def _reproduced(matches: pd.DataFrame, column: str, published: float,
                show_data: bool, partial: str = "") -> tuple[str, str]:
    """The reproduced cell (one entry per configuration) and the differences; runs of the cell
    still going are named (`partial`), beside the complete ones or instead of `not run`."""
    if matches.empty:
        return (f"{PARTIAL}: {partial}" if partial else NOT_RUN), ""
    cells, deltas = [], []
    several = len(matches) > 1
    for _, match in matches.iterrows():
        mean, std, n = (match[f"{column}_mean"], match[f"{column}_std"],
                        int(match[f"{column}_n"]))
        text = f"{mean_std(mean, std, n)} (n={n}"
        if several or show_data:
            text += f", {match['data']}" if show_data else ""
            text += f", recipe {match['recipe']}, config {match['setup_hash']}"
        cells.append(text + ")")
        deltas.append(signed(mean - published) if n else "")
    if partial:
        cells.append(f"and {partial}")
    return "; ".join(cells), "; ".join(deltas)


def _table_lines(published: pd.DataFrame, summary: pd.DataFrame, kinds: Sequence[str],
                 only_run: bool, progress: pd.DataFrame | None = None) -> list[str]:
    """Rows of one source; synthetic runs get no difference column (nothing to compare)."""
    rows = []
    show_data = "real" not in kinds
    for _, row in _row_order(published).iterrows():
        matches = _matches(summary, row, kinds)
        partial = _partial(progress, row, kinds)
        if only_run and matches.empty and not partial:
            continue
        reproduced, delta = _reproduced(matches, row["column"], float(row["value"]), show_data,
                                        partial)
        value = float(row["value"])
        cells = [method_label(row["method"], row["variant"]), row["setting"], row["mode"],
                 str(row["step"]), row["column"], row["convention"], row["recipe"] or "-",
                 number(value, 2 if round(value, 1) != value else 1), reproduced]
        rows.append(cells if show_data else cells + [delta])
    if not rows:
        return []
    if show_data:
        return markdown_table(HEADERS + ["synthetic runs (mean ± std, n seeds)"], rows,
                              ALIGN + ["l"])
    headers = HEADERS + ["reproduced (mean ± std, n seeds)", "Δ (reproduced − published)"]
    return markdown_table(headers, rows, ALIGN + ["l", "r"])


def _notes(published: pd.DataFrame) -> list[str]:
    noted = published[published["notes"] != ""].drop_duplicates("notes")
    return sorted(set(noted["notes"]))


def paper_tables_markdown(published: pd.DataFrame, summary: pd.DataFrame,
                          roots: Sequence[str], partial_runs: int,
                          progress: pd.DataFrame | None = None) -> str:
    """The whole `paper_tables.md` from the published rows and a `seed_summary` table
    (`progress`: `run_progress` of the runs, to say which cells have runs still going)."""
    sdr = published[published["source"].str.startswith(SDR_SOURCE_PREFIX)]
    lines = [
        "# The SDR paper's tables: published vs reproduced", "",
        "Generated by `bench tables`; do not edit by hand (regenerate it). Published numbers "
        "come from `results/published/published.csv` (sources and uncertainties in "
        "`results/published/README.md`). Runs read from: "
        + (", ".join(f"`{r}`" for r in roots) if roots else "none (no runs root found)") + ".",
        "",
        "- *reproduced*: mean ± sample standard deviation over the seeds (n) of complete runs "
        "of exactly the number's protocol (setting and mode), method, variant (shown after the "
        "method's name where it is not the default) and trainer recipe (*recipe*), scored from "
        "their confusion matrices in the number's metric convention, after the same step. "
        "Where a method has "
        "several configurations each is listed with its recipe and config hash (without the "
        "seed); they are never averaged together.",
        "- *Δ* = reproduced − published; *not run* = no complete run on real data.",
        f"- conventions: `sdr` = {CONVENTION_TEXT['sdr']}; `mib` = {CONVENTION_TEXT['mib']}.",
        "- Runs on the embedded synthetic dataset are shown only in the last section, never in "
        "a real-data column: they are not comparable with the papers' numbers; there they are "
        "matched by protocol, method and variant (their recipe is the embedded one).",
        "- *partition* (ADE): the SDR paper trained ADE on MiB's image partition "
        "(`data/ade/<task>/train-<step>.npy`), each image in one step: `bench data "
        "import-splits` imports it; the overlapped ADE numbers of later papers are another "
        "protocol.",
        f"- Partial runs (last step not done) are not averaged: {partial_runs} found; a cell "
        "with runs still going says *partial* and how many steps each has done.", "",
        "## Real data", "",
    ]
    sources = list(pd.unique(sdr["source"]))  # the order of the published file
    for source in sources:
        rows = sdr[sdr["source"] == source]
        lines += [f"### {source}", ""]
        lines += _table_lines(rows, summary, ["real"], only_run=False,
                              progress=progress) + [""]
    lines += ["## Embedded synthetic data: NOT real data, not comparable with the published "
              "numbers", "",
              "The same published numbers beside runs on the embedded synthetic dataset (or on "
              "an unrecorded data set), for checking the harness end to end only: a synthetic "
              "image set, a small model and a short recipe. Only rows with such runs are "
              "listed.", ""]
    any_synthetic = False
    for source in pd.unique(published["source"]):  # SDR's tables first, as in the file
        table = _table_lines(published[published["source"] == source], summary,
                             ["synthetic", "unknown"], only_run=True, progress=progress)
        if table:
            any_synthetic = True
            lines += [f"### {source} (synthetic runs)", ""] + table + [""]
    if not any_synthetic:
        lines += ["No complete synthetic run matches a published number.", ""]
    context = published[~published["source"].str.startswith(SDR_SOURCE_PREFIX)]
    if len(context):
        lines += ["## Other sources: the MiB paper's numbers as quoted, later methods (real "
                  "data only)", ""]
        for source in pd.unique(context["source"]):
            lines += [f"### {source}", ""]
            lines += _table_lines(context[context["source"] == source], summary, ["real"],
                                  only_run=False, progress=progress) + [""]
    notes = _notes(published)
    if notes:
        lines += ["## Notes on the published numbers", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines).rstrip() + "\n"
