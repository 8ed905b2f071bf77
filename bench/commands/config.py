"""`bench config --protocol P --method M [overrides]`: print the resolved configuration."""

from __future__ import annotations

import argparse

from omegaconf import OmegaConf

from bench.commands.common import add_run_arguments, build_config
from bench.config import config_hash


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="print the resolved configuration of a run")
    add_run_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config, _ = build_config(args)
    print(OmegaConf.to_yaml(OmegaConf.create(config)), end="")
    print(f"# config hash (run identity): {config_hash(config)}")
    return 0
