"""Paired comparison of two methods on one protocol: per step, A - B over the seeds both ran.

Methods of one seed share step 0 (one cached model per seed), so their results are paired by
seed; `bench.report.statistics.paired` gives the mean difference, its 95 % interval and the
paired t-test. Only complete, current (not stale) runs count, and one configuration per method:
a method with several (other recipes or overrides) must be told which.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.errors import BenchError
from bench.report.statistics import Interval, PairedComparison, interval, paired


@dataclass(frozen=True)
class StepComparison:
    step: int
    a: Interval
    b: Interval
    comparison: PairedComparison


def _setup_of(scores: pd.DataFrame, method: str, config: str | None) -> pd.DataFrame:
    rows = scores[(scores["method"] == method) & (scores["status"] == "complete")]
    if rows.empty:
        raise BenchError(f"no complete, current run of {method} on this protocol; run it "
                         "(bench run) or check the method's name")
    setups = sorted(rows["setup_hash"].unique())
    if config is not None:
        chosen = [s for s in setups if s.startswith(config)]
        if len(chosen) != 1:
            raise BenchError(f"--config {config} matches {len(chosen)} of {method}'s "
                             f"configurations ({', '.join(setups)})")
        return rows[rows["setup_hash"] == chosen[0]]
    if len(setups) > 1:
        listed = ", ".join(f"{s} (recipe {rows[rows['setup_hash'] == s]['recipe'].iloc[0]})"
                           for s in setups)
        raise BenchError(f"{method} has {len(setups)} configurations on this protocol "
                         f"({listed}); choose one with --config-a / --config-b")
    return rows


def compare(scores: pd.DataFrame, protocol: str, method_a: str, method_b: str, metric: str,
            config_a: str | None = None, config_b: str | None = None) -> list[StepComparison]:
    """Per step of `protocol`, `metric` of A and B over seeds and their paired difference."""
    scores = scores[scores["protocol"] == protocol]
    if scores.empty:
        raise BenchError(f"no runs of protocol {protocol} under the given roots")
    rows_a = _setup_of(scores, method_a, config_a)
    rows_b = _setup_of(scores, method_b, config_b)
    result = []
    for step in sorted(set(rows_a["step"]) & set(rows_b["step"])):
        a = dict(zip(rows_a[rows_a["step"] == step]["seed"],
                     rows_a[rows_a["step"] == step][metric], strict=True))
        b = dict(zip(rows_b[rows_b["step"] == step]["seed"],
                     rows_b[rows_b["step"] == step][metric], strict=True))
        result.append(StepComparison(step, interval(list(a.values())),
                                     interval(list(b.values())), paired(a, b)))
    return result
