"""`bench compare --protocol P A B [RUNS_ROOT ...]`: the paired difference of two methods over
their common seeds, per step, with its 95 % interval and the paired t-test."""

from __future__ import annotations

import argparse
import math

from bench.commands.reading import add_roots_arguments, read_roots


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="paired difference of two methods over common seeds, per step")
    parser.add_argument("--protocol", required=True, help="e.g. voc-15-1")
    parser.add_argument("method_a", metavar="A", help="a method, e.g. sdr")
    parser.add_argument("method_b", metavar="B", help="another method, e.g. mib")
    add_roots_arguments(parser, "./runs")
    parser.add_argument("--metric", choices=["all", "old", "new", "hiou"], default="all")
    parser.add_argument("--convention", choices=["sdr", "mib"], default="sdr",
                        help="sdr: background counted in old and all; mib: foreground only")
    parser.add_argument("--config-a", default=None, help="A's config (setup hash prefix)")
    parser.add_argument("--config-b", default=None, help="B's config (setup hash prefix)")
    parser.set_defaults(handler=run)


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def run(args: argparse.Namespace) -> int:
    from bench.report.compare import compare
    from bench.report.summary import scores_table

    collection = read_roots(args.roots or ["runs"], args.skip_unreadable)
    scores = scores_table(collection.runs, [args.convention])
    rows = compare(scores, args.protocol, args.method_a, args.method_b, args.metric,
                   args.config_a, args.config_b)
    a, b = args.method_a, args.method_b
    print(f"{args.protocol}: {args.metric} mIoU (%), {args.convention} convention; {a} - {b} "
          "paired over the seeds both ran (paired t-test, 95 % Student-t interval)")
    header = (f"{'step':<5}{'seeds':<10}{a:>10}{b:>10}{'difference':>12}"
              f"{'95 % interval':>20}{'p':>8}  verdict")
    print(header)
    for row in rows:
        comparison = row.comparison
        difference = comparison.difference
        if comparison.difference.n < 2:
            verdict = "cannot be told (fewer than 2 common seeds)"
        elif comparison.significant:
            verdict = f"{a} {'>' if difference.mean > 0 else '<'} {b}"
        else:
            verdict = "not significant"
        seeds = ",".join(str(s) for s in comparison.seeds) or "none"
        bounds = (f"[{_number(difference.low)}, {_number(difference.high)}]"
                  if difference.n >= 2 else "-")
        p_value = "-" if math.isnan(comparison.p_value) else f"{comparison.p_value:.3f}"
        print(f"{row.step:<5}{seeds:<10}{_number(row.a.mean):>10}{_number(row.b.mean):>10}"
              f"{difference.mean:>+12.2f}{bounds:>20}{p_value:>8}  {verdict}")
    return 0
