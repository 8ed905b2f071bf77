"""Progress of a reproduction per table, from the store's `done` markers.

A cell is complete when every run it needs (one per seed) has finished its last step, partial
when some step of one of them is done, not started otherwise; a cell of a method this harness
does not have is counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.sweep.status import done_steps


@dataclass(frozen=True)
class TableProgress:
    label: str
    cells: int
    complete: int
    partial: int
    not_started: int
    not_reproducible: int
    runs: int
    runs_done: int

    def line(self) -> str:
        parts = [f"{self.complete} complete", f"{self.partial} partial",
                 f"{self.not_started} not started"]
        if self.not_reproducible:
            parts.append(f"{self.not_reproducible} not reproducible here")
        return (f"{self.label}: {self.cells} cells: {', '.join(parts)}; "
                f"runs {self.runs_done} of {self.runs} done")


def table_progress(section: dict[str, Any]) -> list[TableProgress]:
    """One entry per table of a reproduction manifest section (see Reproduction)."""
    runs = section["runs"]
    steps = {h: done_steps(run) for h, run in runs.items()}
    result = []
    for table in section["tables"]:
        counts = {"complete": 0, "partial": 0, "not_started": 0, "not_reproducible": 0}
        hashes: set[str] = set()
        for cell in table["cells"]:
            if cell["not_reproducible"]:
                counts["not_reproducible"] += 1
                continue
            hashes |= set(cell["runs"])
            done = [steps[h] == int(runs[h]["num_steps"]) for h in cell["runs"]]
            if done and all(done):
                counts["complete"] += 1
            elif any(steps[h] for h in cell["runs"]):
                counts["partial"] += 1
            else:
                counts["not_started"] += 1
        result.append(TableProgress(
            f"{section['paper']}:{table['slug']} (table {table['number']})", len(table["cells"]),
            counts["complete"], counts["partial"], counts["not_started"],
            counts["not_reproducible"], len(hashes),
            sum(steps[h] == int(runs[h]["num_steps"]) for h in hashes)))
    return result
