"""The embedded leaderboard: every registered method, several seeds, on the embedded synthetic
data, with intervals, tested rankings and the SDR paper's order checked.

Runs every (protocol, method, seed) through the store (resumable: rerun the command after an
interruption; finished runs are read back, step 0s shared), exports their specs and records
(not checkpoints) to `results/synthetic/runs/`, and writes `results/synthetic/leaderboard.md`
and `leaderboard.json`. Protocols are run in the order given; when the time budget is spent, the
remaining protocols are cut (settings before seeds) and the table says so.

    python3 benchmarks/embedded_leaderboard.py [--protocols voc-15-1,...] [--methods ft,...]
        [--seeds 0,1,2] [--runs-root runs/embedded] [--budget-minutes 90] [--jobs 3]
        [--tables-only]

With `--jobs N` the seeds are split among N worker processes (torch threads: CPUs // N each);
on 2 cores, single-thread workers do more runs per hour than one 2-thread process, since this
small model does not keep two threads busy (a voc-15-1 step 0: 82 s with 2 threads, 107 s with
1; the README's "Embedded benchmark" section has the leaderboard's measured wall time).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from bench.engine.runner import Runner
from bench.report.aggregate import load_runs
from bench.report.cost import run_costs, section_totals, total_note
from bench.report.leaderboard import entries, published_order, ranking, table
from bench.report.published import load_published
from bench.report.statistics import interval
from bench.report.summary import scores_table
from bench.spec import RunSpec
from methods import method_names

# In the order they run: a protocol that would not finish within the budget is cut, so the
# costliest settings (ADE's 150 classes, voc-10-1's ten incremental steps) come last.
PROTOCOLS = ["voc-15-1", "voc-15-5", "voc-19-1", "voc-15-5-disjoint", "ade-100-50", "voc-10-1"]
# Wall minutes of a protocol's 3 seeds x 14 methods with --jobs 3 on this project's 2-core
# machine (torch 2.14.1): measured for the four protocols of the committed leaderboard,
# estimated for the others from their SGD iterations (README, "Embedded benchmark"). A protocol
# starts only when its estimate fits in what is left of the budget.
MINUTES = {"voc-15-1": 29, "voc-15-5": 19, "voc-19-1": 12, "voc-15-5-disjoint": 20,
           "ade-100-50": 55, "voc-10-1": 48}
RESULTS = Path("results/synthetic")
WALL = RESULTS / "wall_seconds.json"  # each protocol's wall time when its runs were computed


def run_one(protocol: str, method: str, seed: int, runs_root: Path
            ) -> tuple[Path, float, bool]:
    """Run (or read back) one run: its directory, wall seconds, and whether it trained."""
    spec = RunSpec.from_names(protocol, method, seed=seed,
                              overrides=[f"runs_root={runs_root}", "quiet=true"])
    runner = Runner(spec, log=lambda _: None)
    started = time.perf_counter()
    results = runner.run()
    return runner.run_dir.path, time.perf_counter() - started, any(r.trained for r in results)


def export(run_dir: Path, runs_root: Path) -> None:
    """Copy a run's spec, records and done markers (not its checkpoints) into results/."""
    target = RESULTS / "runs" / run_dir.relative_to(runs_root)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(run_dir / "spec.json", target / "spec.json")
    for step_dir in sorted(run_dir.glob("step*")):
        (target / step_dir.name).mkdir()
        for name in ("record.json", "done"):
            shutil.copy2(step_dir / name, target / step_dir.name / name)


def paper_all(protocol: str) -> dict[str, float]:
    """The SDR paper's all-class mIoU after the last step of `protocol`, by method."""
    published = load_published()
    rows = published[(published["protocol"] == protocol) & (published["column"] == "all")
                     & (published["convention"] == "sdr")
                     & published["source"].str.startswith("SDR paper")]
    return {str(r["method"]): float(r["value"]) for _, r in rows.iterrows()}


def describe_recipe() -> list[str]:
    spec = RunSpec.from_names("voc-15-1", "ft", resolve_data=False)
    first, later = spec.recipes[0], spec.recipes[1]
    synth = dict(spec.data.synth)
    return [f"- data: the embedded synthetic `synth-voc` / `synth-ade` (generator defaults"
            f"{', ' + ', '.join(f'{k}={v}' for k, v in synth.items()) if synth else ''}); "
            f"model: DeepLab-V3 on a {spec.model.backbone} of base width "
            f"{spec.model.base_channels}, output stride {spec.model.output_stride}, ASPP "
            f"{spec.model.aspp_channels} channels, backbone pretrained by joint training on other "
            f"images of the same synthetic dataset (`model.pretrained={spec.model.pretrained}`, "
            f"the stand-in for ImageNet weights); recipe "
            f"`{spec.recipe_name}`: step 0 {first.epochs} epochs at lr {first.lr}, later steps "
            f"{later.epochs} epochs at lr {later.lr}, batch {first.batch_size}, crop "
            f"{first.crop}, SGD Nesterov momentum {first.momentum}, poly {first.poly_power}."]


def write_tables(protocols: list[str], methods: list[str], seeds: list[int], cut: list[str],
                 seconds: dict[str, float]) -> None:
    collection = load_runs([RESULTS / "runs"])
    scores = scores_table(collection.runs, ["sdr"])
    scores = scores[scores["method"].isin(methods) & scores["seed"].isin(seeds)]
    versions = sorted({v for run in collection.runs for v in run.torch_versions})
    seeds = sorted(set(scores["seed"]))  # the seeds actually present
    lines = ["# Embedded leaderboard (synthetic data, not comparable with real VOC/ADE numbers)",
             "", "Generated by `python3 benchmarks/embedded_leaderboard.py`. mIoU in % after "
             "the last step, background counted in old and all (the SDR paper's convention); "
             "every cell is mean ± sample standard deviation over seeds [95 % Student-t "
             "interval of the mean], n = number of seeds. Methods of one seed share their step "
             "0, so rankings compare methods by the paired t-test over common seeds: a "
             "neighbouring difference is *significant* when its 95 % interval excludes 0; "
             "otherwise the order cannot be told from these seeds.", "",
             *describe_recipe(),
             f"- seeds: {', '.join(str(s) for s in seeds)}; torch {', '.join(versions)} on "
             f"{platform.machine()} (install with `-c constraints.txt` to reproduce).", ""]
    missing = [p for p in protocols if p not in cut and not entries(scores, p)]
    if cut or missing:
        skipped = [f"{p} (about {MINUTES[p]} min)" if p in MINUTES else p
                   for p in [*cut, *missing]]
        lines += [f"- not run within the time budget (settings cut before seeds; wall time "
                  f"with --jobs 3 here): {', '.join(skipped)}", ""]
    summary: dict[str, dict] = {}
    for protocol in protocols:
        found = entries(scores, protocol) if protocol not in cut else []
        if not found:
            continue
        mode = protocol.split("-")[-1] if protocol.endswith(("disjoint", "sequential")) else (
            "overlap")
        lines += [f"## {protocol} ({mode})", "", *table(found), "",
                  "Ranking by all (best first; each method against the next):", "",
                  *[f"- {line}" for line in ranking(found)], ""]
        paper = paper_all(protocol)
        order = published_order(found, paper)
        if order:
            lines += ["The SDR paper's order (all, real VOC, after the last step) on these "
                      "runs:", "", *[f"- {line}" for line in order], ""]
        totals = section_totals(run_costs([r for r in collection.runs
                                           if r.protocol["name"] == protocol
                                           and r.method in methods and r.seed in seeds
                                           and r.status == "complete"]))
        lines += [f"{total_note(total)}" for total in totals.values()] + [""]
        if protocol in seconds:
            lines += [f"Wall time of this protocol's runs here: {seconds[protocol] / 60:.1f} "
                      "min.", ""]
        summary[protocol] = {
            e.label: {c: interval(list(e.per_seed[c].values())).__dict__ for c in
                      ("old", "new", "all", "hiou")} for e in found}
    (RESULTS / "leaderboard.md").write_text("\n".join(lines).rstrip() + "\n")
    (RESULTS / "leaderboard.json").write_text(json.dumps(summary, indent=1, sort_keys=True)
                                              + "\n")


def run_protocols(protocols: list[str], methods: list[str], seeds: list[int], runs_root: Path,
                  deadline: float) -> tuple[list[str], dict[str, float]]:
    """Run every (protocol, seed, method) in order; a protocol whose estimated wall time
    (MINUTES) would end it after `deadline` (a perf_counter time) is cut. Returns the cut
    protocols and the wall seconds of each protocol with runs computed here."""
    cut: list[str] = []
    seconds: dict[str, float] = {}
    for protocol in protocols:
        if time.perf_counter() + 60 * MINUTES.get(protocol, 0) > deadline:
            cut.append(protocol)
            continue
        protocol_started = time.perf_counter()
        computed = False
        for seed in seeds:
            for method in methods:
                run_dir, took, trained = run_one(protocol, method, seed, runs_root)
                computed |= trained
                export(run_dir, runs_root)
                print(f"{protocol} / {method} / seed {seed}: {took:.0f} s", flush=True)
        if computed:  # a wall time only when runs were computed here (a resumed protocol's
            seconds[protocol] = time.perf_counter() - protocol_started  # is its remainder's)
    return cut, seconds


def pretrain(protocol: str) -> None:
    """The embedded pretraining of the first protocol's dataset, once, with every thread,
    before the workers start (else all of them would wait while one pretrains on a single
    thread). Another dataset's is pretrained by the first worker that reaches it, only if the
    budget lets its protocol start (the other workers wait on its lock). Nothing without
    model.pretrained=synth."""
    from bench.engine.runner import pretrained_backbone

    pretrained_backbone(RunSpec.from_names(protocol, "ft", overrides=["quiet=true"]))


def in_parallel(args: argparse.Namespace, seeds: list[int]) -> tuple[list[str], dict[str, float]]:
    """One worker process per seed (its own step 0s, so nothing waits on a lock), each with
    max(1, CPUs // jobs) torch threads; their cut protocols are merged, and a protocol's wall
    time is the longest of its workers'."""
    import subprocess
    import sys

    from bench.data.loading import available_cpus

    threads = max(1, available_cpus() // args.jobs)
    groups = [seeds[i::args.jobs] for i in range(args.jobs) if seeds[i::args.jobs]]
    reports = [args.runs_root / "_leaderboard" / f"worker{i}.json" for i in range(len(groups))]
    for report in reports:
        report.unlink(missing_ok=True)
    workers = [subprocess.Popen([
        sys.executable, __file__, "--protocols", args.protocols, "--methods", args.methods,
        "--seeds", ",".join(map(str, group)), "--runs-root", str(args.runs_root),
        "--budget-minutes", str(args.budget_minutes), "--worker-report", str(report),
        "--threads", str(threads)]) for group, report in zip(groups, reports, strict=True)]
    if any(worker.wait() != 0 for worker in workers):
        raise SystemExit("a leaderboard worker failed (rerun the same command: finished runs "
                         "are read back)")
    done = [json.loads(report.read_text()) for report in reports]
    cut = {protocol for worker in done for protocol in worker["cut"]}
    # a protocol cut for one worker is incomplete, and one computed by only some workers has
    # no wall time of its own: both are left out
    seconds = {protocol: max(worker["seconds"][protocol] for worker in done)
               for protocol in done[0]["seconds"]
               if protocol not in cut and all(protocol in w["seconds"] for w in done)}
    return [p for p in args.protocols.split(",") if p in cut], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--methods", default=",".join(method_names()))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs-root", type=Path, default=Path("runs/embedded"))
    parser.add_argument("--budget-minutes", type=float, default=90.0)
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, seeds split among them (1: this process)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process")
    parser.add_argument("--worker-report", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tables-only", action="store_true",
                        help="write the tables from results/synthetic/runs, run nothing")
    args = parser.parse_args()
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: use 1 or more worker processes")
    protocols, methods = args.protocols.split(","), args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    cut: list[str] = []
    seconds: dict[str, float] = {}
    if not args.tables_only:
        started = time.perf_counter()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seeds {seeds}",
              flush=True)
        if args.jobs > 1:
            pretrain(protocols[0])
            cut, seconds = in_parallel(args, seeds)
        else:
            cut, seconds = run_protocols(protocols, methods, seeds, args.runs_root,
                                         started + 60 * args.budget_minutes)
        print(f"all runs: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        if args.worker_report:
            args.worker_report.parent.mkdir(parents=True, exist_ok=True)
            args.worker_report.write_text(json.dumps({"cut": cut, "seconds": seconds}))
            return
    known = json.loads(WALL.read_text()) if WALL.is_file() else {}
    if args.tables_only:
        seconds = known
    elif seconds:
        WALL.write_text(json.dumps({**known, **seconds}, indent=1, sort_keys=True) + "\n")
    write_tables(protocols, methods, seeds, cut, seconds)
    print((RESULTS / "leaderboard.md").read_text())


if __name__ == "__main__":
    main()
