"""A paper's tables -> one sweep: every run their cells need, for every seed, deduplicated.

Cells that need the same run (the old, new and all columns of one protocol and method; the same
method in two tables) share it; runs that train the same step 0 share one step-0 job through the
sweep's own planning (`bench.sweep.plan.plan_specs`), and runs already done in the store are not
submitted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.reproduce.cells import Cell, CellPlan, RunRequest, cells_of, plan_cells
from bench.reproduce.papers import Paper, PaperTable
from bench.spec import RunSpec
from bench.sweep.plan import Plan, plan_specs

# (protocol, method, seed, overrides) -> the resolved spec (the CLI's own argument handling)
SpecMaker = Callable[[str, str, int, list[str]], RunSpec]


@dataclass
class Reproduction:
    paper: Paper
    tables: list[PaperTable]
    seeds: list[int]
    cells: CellPlan
    specs: dict[RunRequest, list[RunSpec]]  # one per seed
    sweep: Plan

    def runs_of(self, cells: Sequence[Cell]) -> list[RunSpec]:
        found: dict[str, RunSpec] = {}
        for request, needing in self.cells.requests.items():
            if any(cell in needing for cell in cells):
                found.update((spec.run_hash, spec) for spec in self.specs[request])
        return list(found.values())

    def cells_of(self, table: PaperTable) -> list[Cell]:
        return [cell for cell in self.cells.cells if cell.table == table]

    def manifest_section(self, published: str) -> dict[str, Any]:
        """What `bench status` needs to show progress per table (stored in the manifest)."""
        planned = {run.spec.run_hash: run for run in self.sweep.runs}
        reasons = {id(cell): reason for cell, reason in self.cells.not_reproducible}
        tables = []
        for table in self.tables:
            cells = []
            for cell in self.cells_of(table):
                reason = reasons.get(id(cell))
                hashes = [] if reason else [
                    s.run_hash for request, needing in self.cells.requests.items()
                    if cell in needing for s in self.specs[request]]
                cells.append({"cell": cell.label, "runs": hashes, "not_reproducible": reason})
            tables.append({"number": table.number, "slug": table.slug, "source": table.source,
                           "cells": cells})
        runs = {h: {"protocol": r.spec.protocol.name, "method": r.spec.method,
                    "seed": r.spec.seed, "run_hash": h,
                    "runs_root": str(r.run_dir.runs_root.resolve()),
                    "num_steps": r.num_steps} for h, r in planned.items()}
        return {"paper": self.paper.key, "title": self.paper.title, "published": published,
                "seeds": self.seeds, "tables": tables, "runs": runs}


def plan_reproduction(published: pd.DataFrame, paper: Paper, tables: Sequence[PaperTable],
                      seeds: Sequence[int], make_spec: SpecMaker,
                      real_data: Callable[[str], bool]) -> Reproduction:
    """Resolve every run the tables' cells need and plan them as one sweep. A cell whose run
    cannot be resolved here (its method lacks the variant, its protocol's split files are not
    imported) is listed as not reproducible with the reason, and the others go ahead."""
    from methods.registry import method_names

    known = set(method_names())
    cell_plan = plan_cells(cells_of(published, tables), real_data, lambda m: m in known)
    specs: dict[RunRequest, list[RunSpec]] = {}
    unique: dict[str, RunSpec] = {}
    for request in list(cell_plan.requests):
        try:  # e.g. a partition protocol whose split files were not imported
            resolved = [make_spec(request.protocol, request.method, seed, request.overrides())
                        for seed in seeds]
        except BenchError as error:
            for cell in cell_plan.requests.pop(request):
                cell_plan.not_reproducible.append((cell, str(error)))
            continue
        specs[request] = [unique.setdefault(spec.run_hash, spec) for spec in resolved]
    return Reproduction(paper, list(tables), list(seeds), cell_plan, specs,
                        plan_specs(list(unique.values())))
