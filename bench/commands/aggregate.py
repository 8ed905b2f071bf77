"""`bench aggregate [RUNS_ROOT ...] [--out DIR] [--convention sdr|mib|both]`.

Writes the long per-class table (CSV and Parquet), the per-step old / new / all / hIoU tables
(mean and spread over seeds, with the device-hours to reach each step) as CSV, Markdown and
LaTeX, one set per metric convention, and the cost of every run and table cell in device-hours
(`cost_runs.csv`, `cost_cells.csv`, `cost.md`; a shared step 0 counted once, and said so).
"""

from __future__ import annotations

import argparse

from bench.commands.reading import add_roots_arguments, read_for_output


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aggregate", help="per-class long table and per-step old/new/all tables of runs")
    add_roots_arguments(parser, "./runs")
    parser.add_argument("--out", default="aggregated", help="output directory (./aggregated)")
    parser.add_argument("--convention", choices=["sdr", "mib", "both"], default="both",
                        help="sdr: background counted in old and all; mib: foreground only")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bench.report.aggregate import long_table
    from bench.report.cost import cell_costs, cost_markdown, run_costs, section_totals
    from bench.report.summary import conventions_of, scores_table, seed_summary, write_summaries

    collection, out = read_for_output(args)
    conventions = conventions_of(args.convention)
    table = long_table(collection.runs)
    table.to_csv(out / "per_class.csv", index=False, float_format="%.4f")
    table.to_parquet(out / "per_class.parquet", index=False)
    scores = scores_table(collection.runs, conventions)
    scores.to_csv(out / "per_step.csv", index=False, float_format="%.4f")
    scores.to_parquet(out / "per_step.parquet", index=False)
    summary = seed_summary(scores)
    runs = run_costs(collection.runs)
    cells = cell_costs(runs)
    totals = section_totals(runs)
    runs.to_csv(out / "cost_runs.csv", index=False, float_format="%.6f")
    cells.to_csv(out / "cost_cells.csv", index=False, float_format="%.6f")
    (out / "cost.md").write_text(cost_markdown(cells, totals, collection.roots))
    written = write_summaries(summary, out, conventions, collection.roots, totals)
    print(f"wrote {out / 'per_class.csv'} and .parquet ({len(table)} rows: one per run, step "
          f"and class), {out / 'per_step.csv'} and .parquet (one per run, step, convention)")
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"wrote {out / 'cost_runs.csv'}, {out / 'cost_cells.csv'} and {out / 'cost.md'} "
          "(device-hours per run and per table cell; a shared step 0 counted once)")
    return 0
