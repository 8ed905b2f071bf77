"""Plain-text renderings shared by the summary tables and `paper_tables.md`.

Written by hand rather than through pandas' Styler so that the output depends on nothing but the
numbers (no optional template engine, no locale), which keeps generated files byte-identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DASH = "-"
# The methods in the order the papers list them; others follow alphabetically.
METHOD_ORDER = ("ft", "pi", "ewc", "rw", "lwf", "lwf-mc", "ilt", "cil", "mib", "plop", "sdr",
                "sdr+mib", "rcil", "dkd", "joint")
METHOD_NAMES = {"ft": "FT", "lwf": "LwF", "lwf-mc": "LwF-MC", "ilt": "ILT", "cil": "CIL",
                "mib": "MiB", "plop": "PLOP", "sdr": "SDR", "sdr+mib": "SDR+MiB", "rcil": "RCIL",
                "joint": "Joint", "ewc": "EWC", "pi": "PI", "rw": "RW",
                "dkd": "DKD"}
MODE_ORDER = ("sequential", "disjoint", "overlap", "partition")


def method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def method_label(method: str, variant: str = "") -> str:
    """The method's name, with its variant where that is not the method's default."""
    name = method_name(method)
    if not variant:
        return name
    from bench.errors import BenchError
    from methods import get_method

    try:
        default = get_method(method).defaults.get("variant")
    except BenchError:
        default = None
    return name if variant == default else f"{name} ({variant})"


def is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, digits: int = 1) -> str:
    """A score in %, or a dash where there is none (no ground truth, no new classes yet)."""
    return DASH if is_missing(value) else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 1) -> str:
    if is_missing(value):
        return DASH
    text = f"{value:+.{digits}f}"
    return "+0.0" if text == "-0.0" else text


def mean_std(mean: float | None, std: float | None, n: int, plus_minus: str = "±",
             interval: tuple[float, float] | None = None) -> str:
    """`mean ± std`, with the `[low, high]` interval when given; one seed has no spread, so
    it shows the mean alone."""
    if is_missing(mean):
        return DASH
    if n <= 1 or is_missing(std):
        return number(mean)
    text = f"{number(mean)} {plus_minus} {number(std)}"
    if interval is not None and not any(is_missing(v) for v in interval):
        text += f" [{number(interval[0])}, {number(interval[1])}]"
    return text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                   align: Sequence[str] | None = None) -> list[str]:
    """A GitHub Markdown table; `align` holds 'l' or 'r' per column (default: left)."""
    align = align or ["l"] * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def latex_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str,
                align: Sequence[str] | None = None) -> list[str]:
    """A booktabs table; cells are escaped, and `±` becomes `$\\pm$`."""
    align = align or ["l"] * len(headers)

    def cell(text: str) -> str:
        return latex_escape(text).replace("±", r"$\pm$")

    lines = [r"\begin{table}[ht]", r"\centering", r"\small",
             rf"\caption{{{cell(caption)}}}", r"\begin{tabular}{" + "".join(align) + "}",
             r"\toprule", " & ".join(cell(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return lines
