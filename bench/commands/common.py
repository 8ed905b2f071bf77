"""What `bench run`, `bench config` and `bench sweep` share: arguments -> a resolved RunSpec."""

from __future__ import annotations

import argparse
import os

from bench.commands import paths
from bench.errors import BenchError


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, help="e.g. voc-15-1 (bench list protocols)")
    parser.add_argument("--method", required=True, help="e.g. ft (bench list methods)")
    parser.add_argument("--seed", type=int, default=0)
    add_data_arguments(parser)
    parser.add_argument("--runs-root", default=None, help="where runs are stored (./runs)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="hydra overrides, e.g. trainer.epochs=5 model=small "
                             "method.kd_weight=10")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-root", default=None, help="a real VOC or ADE20K root")
    where.add_argument("--dataset", default=None,
                       help="voc | ade | synth-voc | synth-ade (default: the embedded one)")


def execution_overrides(args: argparse.Namespace) -> list[str]:
    """The options that only say where and how a run executes, as overrides."""
    overrides = []
    if getattr(args, "runs_root", None):
        overrides.append(f"runs_root={args.runs_root}")
    if getattr(args, "quiet", False):
        overrides.append("quiet=true")
    return overrides


def build_spec(args: argparse.Namespace, protocol: str | None = None, method: str | None = None,
               seed: int | None = None, resolve_data: bool = True):
    """The resolved spec of the run the arguments name (torch is imported only now)."""
    from bench.spec import RunSpec

    for override in args.overrides:
        if "=" not in override:
            raise BenchError(f"override {override!r} is not key=value (e.g. trainer.epochs=5)")
    paths.cache_folder()
    paths.data_root(args.data_root)
    data_root = os.path.abspath(args.data_root) if args.data_root is not None else None
    spec = RunSpec.from_names(
        protocol or args.protocol, method or args.method,
        seed=args.seed if seed is None else seed,
        overrides=[*args.overrides, *execution_overrides(args)],
        data_root=data_root, dataset=args.dataset, resolve_data=False)
    paths.runs_root(spec.execution.runs_root)
    return spec.with_data() if resolve_data else spec
