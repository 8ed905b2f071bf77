"""The papers and tables of the published numbers, derived from their `source` column.

A source reads `<PAPER> (<authors, venue>), <table>` (`SDR paper (Michieli & Zanuttigh, CVPR
2021), VOC charts: all classes after the last step`), sometimes with `as quoted in <where>`.
The paper's key is the source's first word in lower case (`sdr`, `mib`, `plop`, `dkd`, ...): a
number belongs to the method paper that published it, wherever it is quoted. A table's id is a
short slug of the table part (`voc-charts`, `table-1`), unique within its paper; tables are also
numbered 1, 2, ... in the order of the published file, which is the order they are listed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from bench.errors import BenchError


@dataclass(frozen=True)
class PaperTable:
    paper: str  # the paper's key
    number: int  # 1, 2, ... within the paper, in the published file's order
    slug: str
    source: str  # the published `source`, verbatim

    @property
    def label(self) -> str:
        return f"{self.paper}:{self.slug}"


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    tables: tuple[PaperTable, ...]

    def select(self, wanted: list[str] | None) -> list[PaperTable]:
        """The tables named by slug or number (all when `wanted` is None), in the paper's
        order; an unknown name is a user error listing the known ones."""
        if wanted is None:
            return list(self.tables)
        chosen = []
        for name in wanted:
            found = [t for t in self.tables if name.lower() in (t.slug, str(t.number))]
            if not found:
                known = ", ".join(f"{t.number} ({t.slug})" for t in self.tables)
                raise BenchError(f"paper {self.key!r} has no table {name!r}; its tables: "
                                 f"{known} (bench reproduce --list)")
            chosen += [t for t in found if t not in chosen]
        return sorted(chosen, key=lambda t: t.number)


def paper_key(source: str) -> str:
    first = source.strip().split()[0] if source.strip() else ""
    return re.sub(r"[^a-z0-9+]", "", first.lower()) or "unnamed"


def _paper_title(source: str) -> str:
    """`SDR paper (Michieli & Zanuttigh, CVPR 2021)`: up to the first closing parenthesis
    followed by a comma; the first word otherwise."""
    match = re.match(r"^(.*?\)),\s", source)
    return match.group(1) if match else source.split()[0]


def table_slug(source: str) -> str:
    """The table part of a source as a slug: after the paper's parenthesis, before `as quoted`,
    a colon or a parenthesis (`VOC charts: ...` -> `voc-charts`; `Table 1, as quoted in ...` ->
    `table-1`); `quoted` when nothing is left."""
    match = re.match(r"^.*?\),\s*(.*)$", source)
    rest = match.group(1) if match else " ".join(source.split()[1:])
    rest = re.split(r",?\s*\bas quoted\b", rest, maxsplit=1)[0]
    rest = re.split(r"[:(]", rest, maxsplit=1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", rest.lower()).strip("-")
    return slug or "quoted"


def papers(published: pd.DataFrame) -> list[Paper]:
    """Every paper of the published numbers with its tables, in the file's order."""
    sources: dict[str, list[str]] = {}
    for source in pd.unique(published["source"]):
        sources.setdefault(paper_key(source), []).append(source)
    result = []
    for key, listed in sources.items():
        tables, used = [], set()
        for number, source in enumerate(listed, start=1):
            slug = table_slug(source)
            if slug in used:
                slug = f"{slug}-{number}"
            used.add(slug)
            tables.append(PaperTable(key, number, slug, source))
        titles = [_paper_title(s) for s in listed]
        title = max(titles, key=lambda t: (t.count("("), titles.count(t)))
        result.append(Paper(key, title, tuple(tables)))
    return result


def find_paper(published: pd.DataFrame, name: str) -> Paper:
    known = papers(published)
    for paper in known:
        if paper.key == name.lower():
            return paper
    listed = ", ".join(p.key for p in known)
    raise BenchError(f"no paper {name!r} in the published numbers; known papers: {listed} "
                     "(bench reproduce --list)")
