"""The published numbers (`results/published/*.csv`): loaded, checked, never silently coerced.

One row per number: its source (paper, table or figure), the protocol it belongs to (dataset,
setting, mode), the method (this project's method names), the step it is reported after, the
column (old / new / all), the value in %, the metric convention (`sdr`: background counted in
old and all; `mib`: foreground only), notes on anything uncertain, and what reproduces it: the
method's `variant` (empty for methods without one) and the trainer `recipe` (`bench/conf/trainer`)
of the paper that produced it. Rows are checked against the protocol and method registries so
that a number can always be matched with exactly the runs that reproduce it (`bench tables`
compares it only with runs of that protocol, method, variant and recipe).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from protocols.protocol import MODES

COLUMNS = ["source", "dataset", "setting", "mode", "method", "step", "column", "value",
           "convention", "notes", "variant", "recipe"]
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "results" / "published" / "published.csv"
VALUE_COLUMNS = ("old", "new", "all")
CONVENTIONS = ("sdr", "mib")
TRAINER_DIR = Path(__file__).resolve().parents[1] / "conf" / "trainer"
# the embedded benchmark's recipe: never the recipe of a published number
NOT_PUBLISHED_RECIPES = ("synth",)


def published_recipes() -> tuple[str, ...]:
    """The trainer recipes a published number can name (bench/conf/trainer, but `synth`)."""
    return tuple(sorted(p.stem for p in TRAINER_DIR.glob("*.yaml")
                        if p.stem not in NOT_PUBLISHED_RECIPES))


def method_problems(method: str, variant: str, recipe: str) -> list[str]:
    """What is wrong with a row's variant and recipe for its method. A method this project does
    not implement (`cil`, `plop`, ...) is never run, so its variant and recipe are not checked."""
    from methods import get_method

    try:
        cls = get_method(method)
    except BenchError:
        return []
    problems = []
    variants = tuple(getattr(cls, "choices", {}).get("variant", ()))
    if variants and variant not in variants:
        problems.append(f"variant {variant!r} of {method} not one of {variants}")
    elif not variants and variant:
        problems.append(f"method {method} has no variant, but the row names {variant!r} "
                        "(leave it empty)")
    recipes = published_recipes()
    if recipe not in recipes:
        problems.append(f"recipe {recipe!r} not one of {recipes} (bench/conf/trainer)")
    return problems


@dataclass(frozen=True)
class PublishedProblem:
    line: int
    reason: str


def check_rows(table: pd.DataFrame) -> list[PublishedProblem]:
    """Every row whose protocol, step, column, convention or value does not make sense."""
    from protocols import get_protocol
    from protocols.registry import canonical_name

    problems = []
    for index, row in table.iterrows():
        line = int(index) + 2  # header is line 1
        if row["mode"] not in MODES:
            problems.append(PublishedProblem(line, f"mode {row['mode']!r} not one of {MODES}"))
            continue
        name = canonical_name(str(row["dataset"]), str(row["setting"]), str(row["mode"]))
        try:
            protocol = get_protocol(name)
        except BenchError:
            problems.append(PublishedProblem(line, f"no protocol {name!r}"))
            continue
        if not 0 <= int(row["step"]) < protocol.num_steps:
            problems.append(PublishedProblem(line, f"step {row['step']} outside 0.."
                                                   f"{protocol.num_steps - 1} of {name}"))
        if row["column"] not in VALUE_COLUMNS:
            problems.append(PublishedProblem(line, f"column {row['column']!r} not one of "
                                                   f"{VALUE_COLUMNS}"))
        if row["convention"] not in CONVENTIONS:
            problems.append(PublishedProblem(line, f"convention {row['convention']!r} not one "
                                                   f"of {CONVENTIONS}"))
        if not 0.0 <= float(row["value"]) <= 100.0:
            problems.append(PublishedProblem(line, f"value {row['value']} is not a % mIoU"))
        problems += [PublishedProblem(line, reason) for reason in
                     method_problems(str(row["method"]), str(row["variant"]),
                                     str(row["recipe"]))]
    return problems


def load_published(path: Path | str = DEFAULT_PATH) -> pd.DataFrame:
    """The published numbers, with `protocol` (this project's protocol name) added."""
    from protocols.registry import canonical_name

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"published numbers {path} not found (results/published/published.csv "
                         "in the repository; --published PATH to use another file)")
    try:
        table = pd.read_csv(path, dtype={"setting": str, "step": int, "value": float},
                            keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as error:
        raise BenchError(f"published numbers {path} are unreadable ({error})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise BenchError(f"published numbers {path} lack the column(s) {missing}")
    problems = check_rows(table)
    if problems:
        listed = "\n  - ".join(f"line {p.line}: {p.reason}" for p in problems)
        raise BenchError(f"published numbers {path} have bad rows:\n  - {listed}")
    table["protocol"] = [canonical_name(d, s, m) for d, s, m in
                         zip(table["dataset"], table["setting"], table["mode"], strict=True)]
    return table
