"""The `bench` command line. User errors (BenchError) print one message and exit 2."""

from __future__ import annotations

import argparse
import sys

from bench.commands import (
    aggregate,
    compare,
    config,
    data,
    listing,
    plot,
    reproduce,
    run,
    status,
    sweep,
    tables,
)
from bench.errors import BenchError

COMMANDS = (run, config, listing, data, sweep, reproduce, status, aggregate, compare, plot, tables)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="css-bench: continual semantic segmentation benchmark harness")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `bench reproduce PAPER --option ... key=value`: argparse gives a positional paper and
    # the trailing overrides no second chance once options stand between them
    if extra and getattr(args, "late_overrides", False) and not any(
            e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.handler(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`bench ... | head`): nothing left to say
        sys.stderr.close()
        return 0
    except OSError as error:  # the machine's, not the input's: a full disk, a lost mount
        where = f" ({error.filename})" if error.filename else ""
        print(f"bench: error: {error.strerror or error}{where}; nothing half-written was kept "
              "(files are written to a temporary name and renamed): fix this and run the "
              "command again", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
