"""`bench status SWEEP`: per-run progress of a submitted sweep (store first, scheduler second)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="progress of a sweep: step k of n per run (per table for a reproduction)")
    parser.add_argument("sweep", help="a sweep manifest path or name (runs/_sweeps/NAME.json)")
    parser.add_argument("--runs-root", default="./runs", help="where runs are stored (./runs)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bench.sweep import manifest
    from bench.sweep.status import rows

    path = manifest.find(args.sweep, args.runs_root)
    content = manifest.read(path)
    table = rows(content)
    width = max([len(r["run"]) for r in table] + [3])
    print(f"sweep {content['name']} ({content['executor']}, {content['created']}): "
          f"{sum(r['state'] == 'done' for r in table)} of {len(table)} runs done")
    if content.get("reproduction"):  # a `bench reproduce` sweep: progress per table first
        from bench.reproduce.progress import table_progress

        section = content["reproduction"]
        print(f"reproduction of {section['title']} (seeds "
              f"{','.join(str(s) for s in section['seeds'])}):")
        for progress in table_progress(section):
            print(f"  {progress.line()}")
    for row in table:
        print(f"{row['run']:<{width}}  step {row['done']} of {row['total']}  "
              f"job {row['job']}  {row['state']}")
        if row["error"]:
            label = "why" if row["state"] == "stale" else "error"
            print(f"{'':<{width}}  {label}: {row['error']}")
        if row.get("elapsed") is not None:
            from bench.sweep.status import duration

            left = row["left"]
            print(f"{'':<{width}}  elapsed {duration(row['elapsed'])}, "
                  + (f"about {duration(left)} left" if left is not None else
                     "time left unknown until an epoch of a step >= 1 ends"))
        if row["log"] and row["state"] != "done":
            print(f"{'':<{width}}  log: {row['log']}")
    if content.get("skipped"):
        print(f"{len(content['skipped'])} run(s) were not submitted (done or already queued)")
    return 0 if all(r["state"] == "done" for r in table) else 1
