"""`bench plot [RUNS_ROOT ...] [--out DIR]`: forgetting curves, per-class IoU heatmaps and
each step's per-epoch loss terms."""

from __future__ import annotations

import argparse

from bench.commands.reading import add_roots_arguments, read_for_output


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot", help="forgetting curves per protocol, class x step IoU heatmaps and per-step "
                     "loss curves (PNG, PDF)")
    add_roots_arguments(parser, "./runs")
    parser.add_argument("--out", default="plots", help="output directory (./plots)")
    parser.add_argument("--convention", choices=["sdr", "mib"], default="sdr",
                        help="metric convention of the curves (sdr: background counted)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bench.report.aggregate import long_table
    from bench.report.plots import class_heatmaps, forgetting_curves, loss_curves
    from bench.report.summary import scores_table

    collection, out = read_for_output(args)
    curves = forgetting_curves(scores_table(collection.runs, [args.convention]), out,
                               args.convention)
    heatmaps = class_heatmaps(long_table(collection.runs), out)
    losses = loss_curves(collection.runs, out)
    print(f"wrote {len(curves) // 2} forgetting-curve figure(s), {len(heatmaps) // 2} "
          f"heatmap(s) and {len(losses) // 2} loss-curve figure(s) (PNG and PDF) to {out}")
    return 0
