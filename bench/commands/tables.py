"""`bench tables [RUNS_ROOT ...] [--out paper_tables.md]`: published vs reproduced numbers.

Default runs roots: `results/synthetic/runs` (the committed embedded runs) plus `runs` (the
default `bench run --runs-root`) where present; explicit roots must hold records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands import paths
from bench.commands.reading import add_roots_arguments, read_roots

DEFAULT_ROOTS = ("results/synthetic/runs", "runs")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tables", help="regenerate paper_tables.md: the SDR paper's numbers beside the runs'")
    add_roots_arguments(parser, " and ".join(DEFAULT_ROOTS) + ", those present")
    parser.add_argument("--out", default="paper_tables.md", help="output file (paper_tables.md)")
    parser.add_argument("--published", default=None,
                        help="published numbers CSV (default: results/published/published.csv)")
    parser.set_defaults(handler=run)


def default_roots() -> list[str]:
    """The default roots that exist and hold at least one run directory."""
    from bench.report.aggregate import has_runs

    return [r for r in DEFAULT_ROOTS if Path(r).is_dir() and has_runs(Path(r))]


def run(args: argparse.Namespace) -> int:
    from bench.report.paper_tables import paper_tables_markdown, run_progress
    from bench.report.published import DEFAULT_PATH, load_published
    from bench.report.summary import CONVENTIONS, scores_table, seed_summary

    out = paths.output_file(args.out, "--out")
    published = load_published(args.published or DEFAULT_PATH)
    roots = args.roots or default_roots()
    runs = []
    if roots:
        runs = read_roots(roots, args.skip_unreadable).runs
    else:
        print(f"no runs under {' or '.join(DEFAULT_ROOTS)}: every number is 'not run'")
    summary = seed_summary(scores_table(runs, list(CONVENTIONS)))
    partial = sum(not run.complete for run in runs)
    text = paper_tables_markdown(published, summary, roots, partial, run_progress(runs))
    out.write_text(text)
    print(f"wrote {out} ({len(published)} published numbers)")
    return 0
