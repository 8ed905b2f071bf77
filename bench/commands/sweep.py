"""`bench sweep --protocols A,B --methods X,Y --seeds 0,1 --executor slurm [...]`: submit and
return; `bench status SWEEP` follows the progress."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.common import add_data_arguments
from bench.errors import BenchError


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Seeds, executor, Slurm resources and runs root: what `bench sweep` and `bench reproduce`
    submit with."""
    parser.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--executor", choices=("slurm", "local", "debug"), default=None,
                        help="where jobs run (default: the launcher config's, local)")
    parser.add_argument("--partition", default=None, help="Slurm partition")
    parser.add_argument("--gpus-per-job", type=int, default=None,
                        help="GPUs (= DDP tasks) per job")
    parser.add_argument("--time", default=None, help="time limit per job, as sbatch --time")
    parser.add_argument("--runs-root", default=None, help="where runs are stored (./runs)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="submit protocols x methods x seeds as jobs (step-0 jobs first)")
    parser.add_argument("--protocols", required=True,
                        help="comma-separated, e.g. voc-15-1,voc-15-5")
    parser.add_argument("--methods", required=True, help="comma-separated, e.g. ft,mib,sdr")
    add_launcher_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the job graph and sbatch scripts; submit nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="hydra overrides for every run, e.g. trainer.epochs=5")
    parser.set_defaults(handler=run)


def launcher_overrides(args: argparse.Namespace) -> list[str]:
    given = {o.split("=", 1)[0] for o in args.overrides}
    overrides = [] if "launcher" in given or args.executor is None else [
        f"launcher={args.executor}"]
    for option, key in (("partition", "partition"), ("gpus_per_job", "gpus_per_job"),
                        ("time", "time")):
        value = getattr(args, option)
        if value is not None:
            overrides.append(f"launcher.{key}={value!r}" if option == "time" else
                             f"launcher.{key}={value}")
    if args.executor is not None and "launcher" in given:
        overrides.append(f"launcher.executor={args.executor}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from bench.commands.common import build_spec
    from bench.sweep import manifest
    from bench.sweep.plan import plan_specs, split_list
    from bench.sweep.status import live_run_dirs
    from bench.sweep.submit import submit

    try:
        seeds = [int(s) for s in split_list(args.seeds, "seeds")]
    except ValueError:
        raise BenchError(f"--seeds {args.seeds!r} is not a comma-separated list of "
                         "integers") from None
    args.overrides = list(args.overrides) + launcher_overrides(args)
    specs = [build_spec(args, protocol=protocol, method=method, seed=seed)
             for protocol in split_list(args.protocols, "protocols")
             for method in split_list(args.methods, "methods") for seed in seeds]
    plan = plan_specs(specs)
    runs_root = specs[0].execution.runs_root
    launcher = dict(specs[0].execution.launcher)
    skip = live_run_dirs(manifest.all_manifests(runs_root))
    if args.dry_run:
        return print_dry_run(plan, launcher, runs_root, skip)
    pending = [r for r in plan.pending() if str(r.run_dir.path) not in skip]
    if not pending:
        print(f"nothing to submit: {len(plan.runs) - len(plan.pending())} run(s) done, "
              f"{len(plan.pending())} with a live job of an earlier sweep")
        return 0
    path, content = submit(plan, launcher, runs_root, skip)
    print(f"submitted {len(content['step0_jobs'])} step-0 job(s) and {len(content['runs'])} "
          f"run job(s) ({launcher['executor']}); {len(content['skipped'])} run(s) skipped "
          "(done or already queued)")
    print(f"sweep manifest: {path}")
    print(f"follow it with: bench status {content['name']} --runs-root {runs_root}")
    return 0


def print_dry_run(plan, launcher: dict, runs_root: str, skip: set[str]) -> int:
    """The job graph and sbatch scripts, and for Slurm whether it would accept the jobs
    (`sbatch --test-only`, nothing submitted)."""
    from bench.sweep import dryrun, manifest
    from bench.sweep.executor import ask_slurm

    folder = Path(runs_root).resolve() / manifest.SWEEPS_DIR / "<sweep>" / "logs"
    print(dryrun.describe(plan, launcher, folder, skip))
    if launcher["executor"] != "slurm":
        return 0
    answer = ask_slurm(launcher)
    if answer.accepted:
        print(f"Slurm accepts these jobs (sbatch --test-only: {answer.message})")
        return 0
    if answer.asked:
        raise BenchError(f"Slurm refuses these jobs (sbatch --test-only): {answer.message}")
    print(f"Slurm was not asked whether it accepts these jobs: {answer.message}")
    return 0
