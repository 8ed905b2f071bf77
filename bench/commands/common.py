"""What `bench run` and `bench config` share: arguments -> a resolved configuration."""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench.config import compose_config, resolve_for_dataset
from bench.data.sources import ROOT_VARIABLES
from bench.errors import BenchError
from protocols import get_protocol

REAL_DEFAULTS = ["model=r101", "trainer=mib"]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, help="e.g. voc-15-1 (bench list protocols)")
    parser.add_argument("--method", required=True, help="e.g. ft (bench list methods)")
    parser.add_argument("--seed", type=int, default=None)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-root", default=None, help="a real VOC or ADE20K root")
    where.add_argument("--dataset", default=None,
                       help="voc | ade | synth-voc | synth-ade (default: the embedded one)")
    parser.add_argument("--runs-root", default=None, help="where runs are stored (./runs)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="hydra overrides, e.g. trainer.epochs=5 model=small")


def uses_real_data(args: argparse.Namespace, dataset: str) -> bool:
    if args.dataset is not None:
        return not args.dataset.startswith("synth-")
    if args.data_root is not None:
        return True
    overridden = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in args.overrides if "=" in o}
    if overridden.get("data.dataset") not in (None, "null"):
        return not overridden["data.dataset"].startswith("synth-")
    return bool(overridden.get("data.root")) or bool(os.environ.get(ROOT_VARIABLES[dataset]))


def build_config(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The resolved config of a run, and whether it runs on the embedded synthetic data."""
    for override in args.overrides:
        if "=" not in override:
            raise BenchError(f"override {override!r} is not key=value (e.g. trainer.epochs=5)")
    protocol = get_protocol(args.protocol)
    from methods import get_method

    get_method(args.method)  # an unknown name fails here, before any data is prepared
    real = uses_real_data(args, protocol.dataset)
    overrides = []
    given_groups = {o.split("=", 1)[0] for o in args.overrides}
    if real:
        overrides += [o for o in REAL_DEFAULTS if o.split("=", 1)[0] not in given_groups]
    overrides += [f"protocol={protocol.name}", f"method={args.method}"]
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.dataset is not None:
        overrides.append(f"data.dataset={args.dataset}")
    if args.data_root is not None:
        overrides.append(f"data.root={os.path.abspath(args.data_root)}")
    if getattr(args, "runs_root", None):
        overrides.append(f"runs_root={args.runs_root}")
    if getattr(args, "quiet", False):
        overrides.append("quiet=true")
    config = compose_config(overrides + list(args.overrides))
    if config["protocol"] != protocol.name:
        raise BenchError("set the protocol with --protocol, not as an override")
    return resolve_for_dataset(config, protocol.dataset), not real
