"""`bench plot [RUNS_ROOT ...] [--out DIR]`: forgetting curves and per-class IoU heatmaps."""

from __future__ import annotations

import argparse

from bench.commands.reading import add_roots_arguments, read_for_output


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot", help="forgetting curves per protocol and class x step IoU heatmaps (PNG, PDF)")
    add_roots_arguments(parser, "./runs")
    parser.add_argument("--out", default="plots", help="output directory (./plots)")
    parser.add_argument("--convention", choices=["sdr", "mib"], default="sdr",
                        help="metric convention of the curves (sdr: background counted)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bench.aggregate import long_table
    from bench.plots import class_heatmaps, forgetting_curves
    from bench.summary import scores_table

    collection, out = read_for_output(args)
    curves = forgetting_curves(scores_table(collection.runs, [args.convention]), out,
                               args.convention)
    heatmaps = class_heatmaps(long_table(collection.runs), out)
    print(f"wrote {len(curves) // 2} forgetting-curve figure(s) and {len(heatmaps) // 2} "
          f"heatmap(s) (PNG and PDF) to {out}")
    return 0
