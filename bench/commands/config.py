"""`bench config --protocol P --method M [overrides]`: print the resolved run spec."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import yaml

from bench.commands.common import add_run_arguments, build_spec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="print the resolved run spec and its hash")
    add_run_arguments(parser)
    parser.set_defaults(handler=run)


def grouped_steps(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-step recipes with runs of equal steps shown once (`steps 1-5`)."""
    groups: dict[str, dict[str, Any]] = {}
    start = 0
    for index in range(1, len(steps) + 1):
        if index == len(steps) or steps[index] != steps[start]:
            name = f"step {start}" if index - 1 == start else f"steps {start}-{index - 1}"
            groups[name] = steps[start]
            start = index
    return groups


def run(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    identity = spec.identity()
    identity["recipe"]["steps"] = grouped_steps(identity["recipe"]["steps"])
    shown = {**identity, "execution": {
        k: v for k, v in dataclasses.asdict(spec.execution).items() if k != "launcher"},
        "checks": {"divergence_factor": spec.recipes[0].divergence_factor}}
    print(yaml.safe_dump(shown, default_flow_style=None, sort_keys=False, width=100), end="")
    print(f"# run hash (the run's identity; its directory is seed{spec.seed}-{spec.run_hash}): "
          f"{spec.run_hash}")
    return 0
