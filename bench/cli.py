"""The `bench` command line. User errors (BenchError) print one message and exit 2."""

from __future__ import annotations

import argparse
import sys

from bench.commands import (
    aggregate,
    config,
    data,
    listing,
    plot,
    run,
    status,
    sweep,
    tables,
)
from bench.errors import BenchError

COMMANDS = (run, config, listing, data, sweep, status, aggregate, plot, tables)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="css-bench: continual semantic segmentation benchmark harness")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
