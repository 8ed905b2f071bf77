"""What `bench aggregate`, `bench plot` and `bench tables` share: runs roots -> readable runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.commands import paths

if TYPE_CHECKING:  # torch and pandas load only when a command reads runs
    from bench.report.aggregate import RunCollection


def add_roots_arguments(parser: argparse.ArgumentParser, default_text: str) -> None:
    parser.add_argument("roots", nargs="*", metavar="RUNS_ROOT",
                        help=f"runs roots to read, searched recursively (default: {default_text})")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="aggregate what can be read; unreadable records are still listed")


def read_roots(roots: Sequence[str], skip_unreadable: bool) -> RunCollection:
    """Load every run; unreadable records stop the command unless skipping was asked for."""
    from bench.report.aggregate import load_runs

    collection = load_runs(roots)
    if not skip_unreadable:
        collection.require_readable()
    for line in collection.notices():
        print(line if line.startswith("warning:") else f"note: {line}", file=sys.stderr)
    complete = sum(run.complete for run in collection.runs)
    print(f"read {len(collection.runs)} run(s) from {', '.join(roots)}: {complete} complete, "
          f"{len(collection.runs) - complete} partial")
    return collection


def read_for_output(args: argparse.Namespace) -> tuple[RunCollection, Path]:
    """The runs of `args.roots` (default ./runs) and the created output folder `args.out`."""
    paths.folder(args.out, f"--out {args.out}", "pass a folder for --out (created if missing)")
    collection = read_roots(args.roots or ["runs"], args.skip_unreadable)
    return collection, paths.output_folder(args.out, "--out")
