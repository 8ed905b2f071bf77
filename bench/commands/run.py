"""`bench run --protocol NAME --method NAME [...]`: train and evaluate every step of a run."""

from __future__ import annotations

import argparse
import math
from typing import Any

from bench.commands.common import add_run_arguments, build_config
from bench.errors import BenchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="train and evaluate every step of a protocol")
    add_run_arguments(parser)
    parser.add_argument("--steps", default=None, help="steps to run, e.g. 0-2 or 3 (default all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (batch jobs)")
    parser.set_defaults(handler=run)


def parse_steps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        if "-" in text:
            first, last = (int(x) for x in text.split("-", 1))
            return list(range(first, last + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise BenchError(f"--steps {text!r} is not a step range like 0-2 or 3") from None


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None or math.isnan(value) else f"{value:>{width}.1f}"


def result_table(records: list[dict[str, Any]], notes: dict[int, str]) -> list[str]:
    last = records[-1]["scores"]
    old_name = f"old ({last['old_classes']})"
    new_name = f"new ({last['new_classes']})" if last["new_classes"] else "new"
    lines = [f"{'step':<5}{'classes added':<22}{old_name:>14}{new_name:>14}{'all':>8}{'hIoU':>8}"
             f"{'time':>9}  "]
    for record in records:
        scores, step = record["scores"], record["step"]
        added = record["classes_added"]
        if len(record["protocol"]["step_sizes"]) > 1 and "," not in added and "-" not in added:
            added += f" ({record['class_names'][added]})"
        seconds = sum(record["timings"].values())
        time_text = f"{seconds:.0f}s" if record["timings"] else "-"
        lines.append(f"{step:<5}{added[:21]:<22}{_cell(scores['old'], 14)}"
                     f"{_cell(scores['new'], 14)}{_cell(scores['all'], 8)}"
                     f"{_cell(scores['hiou'], 8)}{time_text:>9}  {notes.get(step, '')}".rstrip())
    return lines


def run(args: argparse.Namespace) -> int:
    steps = parse_steps(args.steps)
    config, synthetic = build_config(args)
    if synthetic:
        name = config["data"]["dataset"] or f"synth-{config['protocol'].split('-', 1)[0]}"
        print(f"no data configured: running on the embedded synthetic dataset {name} "
              "(real data: --data-root PATH or --dataset voc|ade)", flush=True)
    from bench.runner import Runner  # torch is imported only once arguments are valid

    runner = Runner(config, log=lambda message: print(message, flush=True))
    store = runner.store
    protocol = runner.protocol
    print(f"run: {runner.requested.name} / {runner.method.name} / seed {runner.seed} / config "
          f"{runner.hash} on {runner.source.describe()}")
    print("protocol: " + ", ".join(f"{k}={v}" for k, v in protocol.knobs().items()))
    done = [s for s in range(protocol.num_steps) if store.is_done(s)]
    if done and len(done) == protocol.num_steps:
        print(f"all {protocol.num_steps} steps are already done in {store.run_dir}: nothing to "
              "train")
    elif done or store.exists():
        print(f"resuming {store.run_dir}: steps done {done or 'none'}")
    else:
        others = store.siblings()
        if others:
            print(f"the configuration differs from the {len(others)} earlier run(s) of this "
                  f"protocol, method and seed ({', '.join(p.name for p in others)}): this is a "
                  f"new run, {store.run_dir.name}")
    results = runner.run(steps)
    notes = {r.step: ("shared step 0 reused" if r.reused_step0 else
                      "trained" if r.trained else "done earlier") for r in results}
    if results:
        print()
        print("\n".join(result_table([r.record for r in results], notes)))
        convention = ("background counted in old and all (SDR)" if protocol.background_in_old_all
                      else "foreground only (MiB)")
        print(f"mIoU in %, {convention}; evaluation on {protocol.eval_crop} crops")
    print(f"run directory: {store.run_dir}")
    return 0
