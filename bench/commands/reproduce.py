"""`bench reproduce PAPER [--tables T1,T2] [--seeds 0,1,2] [--executor ...] [--dry-run]`: every
run a paper's published tables need, as one sweep; `bench reproduce --list` names the papers."""

from __future__ import annotations

import argparse
import os

from bench.commands.sweep import add_launcher_arguments
from bench.errors import BenchError

# set per cell from the published numbers; a global override would silently replace them
PER_CELL_KEYS = ("trainer", "method.variant")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce", help="run every published cell of a paper's tables (one sweep)")
    parser.add_argument("paper", nargs="?", help="a paper's key, e.g. sdr (bench reproduce "
                                                 "--list)")
    parser.add_argument("--list", action="store_true", help="list the papers and their tables")
    parser.add_argument("--tables", default=None,
                        help="comma-separated table slugs or numbers (default: all)")
    add_launcher_arguments(parser)
    parser.add_argument("--voc-root", default=None,
                        help="a real Pascal VOC root (default: CSS_BENCH_VOC_ROOT; without "
                             "one, VOC cells run on the embedded synthetic data)")
    parser.add_argument("--ade-root", default=None,
                        help="a real ADE20K root (default: CSS_BENCH_ADE_ROOT; likewise)")
    parser.add_argument("--published", default=None,
                        help="published numbers CSV (default: results/published/published.csv)")
    parser.add_argument("--gpu", default=None,
                        help="the GPU whose benchmarks/gpu_step.py figures estimate the cost "
                             "(default: the only one measured)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan, the job graph and the cost estimate; submit "
                             "nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="hydra overrides for every run, e.g. trainer.epochs=5")
    parser.set_defaults(handler=run, late_overrides=True)


def print_list(published) -> None:
    from bench.reproduce.papers import papers

    for paper in papers(published):
        print(f"{paper.key}: {paper.title}")
        for table in paper.tables:
            rows = published[published["source"] == table.source]
            methods = ", ".join(sorted(set(rows["method"])))
            print(f"  {table.number}  {table.slug}: {len(rows)} cells, "
                  f"{rows['protocol'].nunique()} protocol(s); methods {methods}")
            print(f"     {table.source}")


def _spec_maker(args: argparse.Namespace):
    """(protocol, method, seed, overrides) -> resolved spec, with each dataset's root."""
    from bench.commands.common import build_spec
    from protocols import get_protocol

    roots = {"voc": args.voc_root, "ade": args.ade_root}

    def namespace(protocol: str, extra: list[str]) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(args), "overrides": [*args.overrides, *extra],
                                     "data_root": roots[get_protocol(protocol).dataset],
                                     "dataset": None, "seed": 0})

    def make(protocol: str, method: str, seed: int, extra: list[str]):
        return build_spec(namespace(protocol, extra), protocol=protocol, method=method,
                          seed=seed)

    known: dict[str, bool] = {}

    def real_data(protocol: str) -> bool:
        dataset = get_protocol(protocol).dataset
        if dataset not in known:
            probe = build_spec(namespace(protocol, []), protocol=protocol, method="ft", seed=0,
                               resolve_data=False)
            known[dataset] = not probe.data.synthetic
        return known[dataset]

    return make, real_data


def _check_overrides(overrides: list[str]) -> None:
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in PER_CELL_KEYS:
            raise BenchError(f"{override!r}: bench reproduce sets {key} per cell from the "
                             "published numbers; drop it (single keys such as trainer.epochs=5 "
                             "are fine) or use bench sweep")


def _finished_costs(runs_root: str):
    from pathlib import Path

    import pandas as pd

    from bench.report.aggregate import has_runs, load_runs
    from bench.report.cost import RUN_COLUMNS, run_costs

    if not Path(runs_root).is_dir() or not has_runs(Path(runs_root)):
        return pd.DataFrame(columns=RUN_COLUMNS)
    return run_costs(load_runs([runs_root]).runs)


def to_submit(sweep, skip: set[str]):
    """The runs a submission would send (pending, no live job) and the step-0 jobs they need."""
    todo = [r for r in sweep.pending() if str(r.run_dir.path) not in skip]
    wanted = {r.run_dir.path for r in todo}
    return todo, [j for j in sweep.step0_jobs if any(r.run_dir.path in wanted for r in j.runs)]


def print_not_reproducible(cells) -> None:
    if cells.not_reproducible:
        reasons: dict[str, int] = {}
        for _, reason in cells.not_reproducible:
            reasons[reason] = reasons.get(reason, 0) + 1
        print(f"{len(cells.not_reproducible)} cell(s) not reproducible here:")
        for reason, count in sorted(reasons.items()):
            print(f"  {count} cell(s): {reason}")


def print_plan(reproduction, skip: set[str]) -> None:
    cells = reproduction.cells
    tables = ", ".join(f"{t.number} ({t.slug})" for t in reproduction.tables)
    runs = reproduction.sweep.runs
    print(f"{reproduction.paper.key}: {reproduction.paper.title}; tables {tables}; seeds "
          f"{','.join(str(s) for s in reproduction.seeds)}")
    print(f"{len(cells.cells)} published cells need {len(cells.requests)} configuration(s) x "
          f"{len(reproduction.seeds)} seed(s) = {len(runs)} distinct run(s)")
    for table in reproduction.tables:
        table_cells = reproduction.cells_of(table)
        specs = reproduction.runs_of(table_cells)
        print(f"  {table.number} {table.slug}: {len(table_cells)} cells, {len(specs)} runs")
    by_protocol: dict[str, list[str]] = {}
    for request in cells.requests:
        by_protocol.setdefault(request.protocol, []).append(
            request.label.split("/", 1)[1])
    print("configurations (protocol: methods):")
    for protocol, methods in by_protocol.items():
        print(f"  {protocol}: {', '.join(methods)}")
    print_not_reproducible(cells)
    if any(r.spec.data.synthetic for r in runs):
        print("note: runs without a configured data root use the embedded synthetic data and "
              "its recipe (trainer=synth), not the paper's: a check of the path, not of the "
              "numbers (--voc-root / --ade-root for real data)")
    sweep = reproduction.sweep
    todo, step0 = to_submit(sweep, skip)
    print(f"to submit: {len(todo)} run job(s) and {len(step0)} step-0 job(s) "
          f"({len(runs) - len(sweep.pending())} run(s) already done, "
          f"{len(sweep.pending()) - len(todo)} with a live job of an earlier sweep)")


def run(args: argparse.Namespace) -> int:
    from bench.commands.sweep import launcher_overrides, print_dry_run
    from bench.report.published import DEFAULT_PATH, load_published

    published_path = os.path.abspath(args.published or DEFAULT_PATH)
    published = load_published(published_path)
    if args.list:
        print_list(published)
        return 0
    if not args.paper:
        raise BenchError("name a paper (e.g. bench reproduce sdr), or list them with "
                         "bench reproduce --list")
    from bench.reproduce.estimate import estimate, load_figures, pick_device
    from bench.reproduce.papers import find_paper
    from bench.reproduce.plan import plan_reproduction
    from bench.reproduce.progress import table_progress
    from bench.sweep import manifest
    from bench.sweep.plan import split_list
    from bench.sweep.status import live_run_dirs
    from bench.sweep.submit import submit

    paper = find_paper(published, args.paper)
    tables = paper.select(split_list(args.tables, "tables") if args.tables else None)
    try:
        seeds = [int(s) for s in split_list(args.seeds, "seeds")]
    except ValueError:
        raise BenchError(f"--seeds {args.seeds!r} is not a comma-separated list of "
                         "integers") from None
    _check_overrides(args.overrides)
    args.overrides = list(args.overrides) + launcher_overrides(args)
    make_spec, real_data = _spec_maker(args)
    reproduction = plan_reproduction(published, paper, tables, seeds, make_spec, real_data)
    if not reproduction.sweep.runs:
        print_not_reproducible(reproduction.cells)
        raise BenchError(f"no cell of {paper.key}'s tables {args.tables or '(all)'} can be "
                         "reproduced here (see the reasons above)")
    first = reproduction.sweep.runs[0].spec
    runs_root, launcher = first.execution.runs_root, dict(first.execution.launcher)
    skip = live_run_dirs(manifest.all_manifests(runs_root))
    print_plan(reproduction, skip)
    figures = load_figures()
    device = pick_device(figures, args.gpu)
    todo, step0 = to_submit(reproduction.sweep, skip)
    print(estimate(todo, step0, _finished_costs(runs_root), figures, device).text())
    section = reproduction.manifest_section(published_path)
    if args.dry_run:
        print()
        return print_dry_run(reproduction.sweep, launcher, runs_root, skip)
    if not todo:
        print("nothing to submit")
        for progress in table_progress(section):
            print(progress.line())
        return 0
    path, content = submit(reproduction.sweep, launcher, runs_root, skip,
                           extra={"reproduction": section})
    print(f"submitted {len(content['step0_jobs'])} step-0 job(s) and {len(content['runs'])} "
          f"run job(s) ({launcher['executor']}); {len(content['skipped'])} run(s) skipped "
          "(done or already queued)")
    print(f"sweep manifest: {path}")
    failed = content.get("errors", {})
    if launcher["executor"] == "debug":  # the jobs ran in this process
        for progress in table_progress(section):
            print(progress.line())
        if failed:
            print(f"{len(failed)} job(s) raised an error (bench status {content['name']} "
                  "shows which run):")
            for job_id, error in failed.items():
                print(f"  {job_id}: {error}")
    print(f"follow it with: bench status {content['name']} --runs-root {runs_root}; "
          f"then bench tables {runs_root}")
    return 1 if failed else 0
