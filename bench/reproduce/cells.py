"""Published cells -> the runs that reproduce them.

A published cell (one row of `results/published/published.csv`) names its protocol, method,
the method's `variant` (empty: the method's default) and the trainer `recipe` of the paper
(`sdr`, `mib`, ...; empty: the method's own). The run that reproduces it is that protocol and
method with `method.variant=<variant>` and, on real data, `trainer=<recipe>`. On the embedded
synthetic data the embedded recipe (`trainer=synth`, sized for 2 CPU cores) stands in for the
paper's recipe: the paper recipe's 512 px crops and 30-60 epochs would take days there, and the
synthetic numbers are never compared with the paper's anyway. Cells of a method this harness
does not have are listed as not reproducible, with the reason; they never stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.reproduce.papers import PaperTable


@dataclass(frozen=True)
class RunRequest:
    """What one run of a reproduction is, before the seed: protocol, method, variant, recipe."""

    protocol: str
    method: str
    variant: str  # "" = the method's default
    recipe: str  # "" = the method's own recipe (or the embedded one)

    def overrides(self) -> list[str]:
        found = [f"method.variant={self.variant}"] if self.variant else []
        return found + ([f"trainer={self.recipe}"] if self.recipe else [])

    @property
    def label(self) -> str:
        extras = [f"variant={self.variant}"] if self.variant else []
        extras += [f"recipe={self.recipe}"] if self.recipe else []
        return f"{self.protocol}/{self.method}" + (f" ({', '.join(extras)})" if extras else "")


@dataclass(frozen=True)
class Cell:
    table: PaperTable
    protocol: str
    method: str
    step: int
    column: str
    convention: str
    value: float
    variant: str
    recipe: str  # as published (the real-data recipe)

    @property
    def label(self) -> str:
        variant = f"[{self.variant}]" if self.variant else ""
        return (f"{self.method}{variant} {self.protocol} step {self.step} {self.column} "
                f"({self.convention}) = {self.value:g}")


@dataclass
class CellPlan:
    """The cells of the chosen tables, grouped by the run that reproduces them."""

    cells: list[Cell]
    requests: dict[RunRequest, list[Cell]] = field(default_factory=dict)
    not_reproducible: list[tuple[Cell, str]] = field(default_factory=list)


def cells_of(published: pd.DataFrame, tables: Sequence[PaperTable]) -> list[Cell]:
    """The published rows of `tables` as cells (variant and recipe as the file names them)."""
    by_source = {t.source: t for t in tables}
    rows = published[published["source"].isin(list(by_source))]
    cells = []
    for _, row in rows.iterrows():
        cells.append(Cell(
            table=by_source[row["source"]], protocol=str(row["protocol"]),
            method=str(row["method"]), step=int(row["step"]), column=str(row["column"]),
            convention=str(row["convention"]), value=float(row["value"]),
            variant=_text(row["variant"]), recipe=_text(row["recipe"])))
    return cells


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else \
        str(value).strip()


def plan_cells(cells: Sequence[Cell], real_data: Callable[[str], bool],
               known_method: Callable[[str], bool]) -> CellPlan:
    """Group cells by the run that reproduces them. `real_data(protocol)` says whether that
    protocol's dataset is configured (the recipe applies only there); `known_method(name)`
    whether the method is in the registry."""
    plan = CellPlan(list(cells))
    for cell in cells:
        if not known_method(cell.method):
            plan.not_reproducible.append(
                (cell, f"no method {cell.method!r} in this harness (bench list methods)"))
            continue
        recipe = cell.recipe if real_data(cell.protocol) else ""
        request = RunRequest(cell.protocol, cell.method, cell.variant, recipe)
        plan.requests.setdefault(request, []).append(cell)
    return plan
