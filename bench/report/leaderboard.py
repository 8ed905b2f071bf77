"""A multi-seed leaderboard: per protocol, every method's scores after the last step over seeds,
a ranking whose neighbouring differences are tested, and the published order checked.

Cells are mean ± sample standard deviation [95 % Student-t interval] over seeds. Methods of one
seed share step 0, so two methods are compared on their paired differences over the seeds both
ran (`statistics.paired`: the paired t-test; "significant" means its 95 % interval excludes 0).
An order between two methods is claimed only where that holds; otherwise it "cannot be told".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bench.report.cost import hours
from bench.report.formats import markdown_table, mean_std, method_key, method_label
from bench.report.statistics import interval, paired

COLUMNS = ("old", "new", "all", "hiou")


@dataclass(frozen=True)
class Entry:
    """One method's results after the last step of one protocol."""

    method: str
    variant: str
    recipe: str
    per_seed: dict[str, dict[int, float]]  # column -> seed -> value
    step0_all: dict[int, float]
    device_hours: dict[int, float]  # seed -> what the run's result cost (its step 0 included)

    @property
    def label(self) -> str:
        return method_label(self.method, self.variant)


def entries(scores: pd.DataFrame, protocol: str) -> list[Entry]:
    """Complete, current runs of `protocol` (one convention's `scores_table` rows), one entry
    per (method, setup); the step-0 "all" of each seed comes with it."""
    frame = scores[(scores["protocol"] == protocol) & (scores["status"] == "complete")]
    found = []
    for (method, _setup), rows in frame.groupby(["method", "setup_hash"], sort=True):
        last = rows[rows["step"] == rows["protocol_steps"].iloc[0] - 1]
        first = rows[(rows["stored_step"] == 0) & (rows["step"] == 0)]  # joint has none
        found.append(Entry(
            method=str(method), variant=str(rows["variant"].iloc[0]),
            recipe=str(rows["recipe"].iloc[0]),
            per_seed={c: dict(zip(last["seed"], last[c], strict=True)) for c in COLUMNS},
            step0_all=dict(zip(first["seed"], first["all"], strict=True)),
            device_hours=dict(zip(last["seed"], last["device_hours"], strict=True))))
    return sorted(found, key=lambda e: method_key(e.method))


def _mean(values: dict[int, float]) -> float:
    finite = [v for v in values.values() if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def ranking(found: Sequence[Entry], column: str = "all") -> list[str]:
    """Methods by mean `column`, best first, each neighbouring pair tested (paired over seeds)."""
    ordered = sorted(found, key=lambda e: -_mean(e.per_seed[column]))
    lines = []
    for index, entry in enumerate(ordered):
        line = f"{index + 1}. {entry.label} ({_mean(entry.per_seed[column]):.1f})"
        if index + 1 < len(ordered):
            after = ordered[index + 1]
            result = paired(entry.per_seed[column], after.per_seed[column])
            difference = result.difference
            if difference.n < 2:
                verdict = "cannot be told from the next (fewer than 2 common seeds)"
            elif result.significant:
                verdict = (f"above {after.label}: +{difference.mean:.1f} "
                           f"[{difference.low:.1f}, {difference.high:.1f}], p = "
                           f"{result.p_value:.3f} (significant)")
            else:
                verdict = (f"vs {after.label}: +{difference.mean:.1f} "
                           f"[{difference.low:.1f}, {difference.high:.1f}], p = "
                           f"{result.p_value:.3f} (not significant)")
            line += f": {verdict}"
        lines.append(line)
    return lines


def published_order(found: Sequence[Entry], published: dict[str, float]) -> list[str]:
    """For every pair of methods with a published `all` value, whether the published order
    holds here (significant, same direction), is reversed (significant, other direction) or
    cannot be told (not significant)."""
    by_method = {e.method: e for e in found if e.method in published}
    methods = sorted(by_method, key=lambda m: -published[m])
    lines = []
    for index, upper in enumerate(methods):
        for lower in methods[index + 1:]:
            if published[upper] == published[lower]:
                continue
            result = paired(by_method[upper].per_seed["all"], by_method[lower].per_seed["all"])
            difference = result.difference
            if difference.n >= 2 and result.significant:
                verdict = "holds" if difference.mean > 0 else "is reversed"
            else:
                verdict = "cannot be told"
            interval_text = (f"[{difference.low:+.1f}, {difference.high:+.1f}]"
                             if difference.n >= 2 else "(one seed)")
            lines.append(f"{by_method[upper].label} {published[upper]:.1f} > "
                         f"{by_method[lower].label} {published[lower]:.1f} in the paper: "
                         f"{verdict} here (difference {difference.mean:+.1f} {interval_text})")
    return lines


def table(found: Sequence[Entry]) -> list[str]:
    """The Markdown table: every column as mean ± std [95 % interval], n seeds."""
    headers = ["method", "recipe", *COLUMNS, "step-0 all", "device-h per seed", "n"]
    rows = []
    for entry in found:
        cells = [entry.label, entry.recipe]
        for values in [*(entry.per_seed[c] for c in COLUMNS), entry.step0_all]:
            summary = interval(list(values.values()))
            cells.append(mean_std(summary.mean, summary.std, summary.n,
                                  interval=(summary.low, summary.high)) if values else "-")
        spent = list(entry.device_hours.values())
        cells.append(hours(sum(spent) / len(spent)) if spent and not any(
            math.isnan(v) for v in spent) else "-")
        cells.append(str(len(entry.per_seed["all"])))
        rows.append(cells)
    return markdown_table(headers, rows, ["l", "l", "r", "r", "r", "r", "r", "r", "r"])
