"""`bench run --protocol NAME --method NAME [...]`: train and evaluate every step of a run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from bench.commands.common import add_run_arguments, build_spec
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
            if last < first:
                raise BenchError(f"--steps {text} is a reversed range; steps run in order, "
                                 f"write --steps {last}-{first}")
            return list(range(first, last + 1))
        return sorted({int(x) for x in text.split(",")})
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


def new_run_notes(spec, run_dir) -> list[str]:
    """Why this run is new: earlier runs of the same names whose identity differs today (stale:
    a default, recipe or the data changed), or other configurations of this protocol, method
    and seed."""
    from bench.spec import differences

    notes, others = [], []
    for sibling in run_dir.siblings():
        try:
            stored = sibling.read_spec()
        except BenchError:
            stored = None
        if stored and stored.get("inputs") == spec.inputs.to_dict():
            changed = differences(stored.get("identity", {}), spec.identity())
            notes.append(f"{sibling.path.name} was resolved from the same names and overrides, "
                         f"but today's resolution differs ({'; '.join(changed[:6])}"
                         f"{'; ...' if len(changed) > 6 else ''}): it is stale, and this is a "
                         f"new run, {run_dir.path.name}")
        else:
            others.append(sibling.path.name)
    if others:
        notes.append(f"the configuration differs from the {len(others)} earlier run(s) of this "
                     f"protocol, method and seed ({', '.join(others)}): this is a new run, "
                     f"{run_dir.path.name}")
    return notes


def other_root_notes(spec, run_dir, source, results) -> list[str]:
    """Steps read back that were computed from another copy of the data: the digest of the
    content is in the run's identity, so the copy here is the same data; say where they came
    from."""
    if source.synthetic:
        return []
    here = Path(source.root).resolve()
    roots = run_dir.data_roots()
    elsewhere: dict[str, list[int]] = {}
    for result in results:
        root = roots.get(result.step)
        if not result.trained and not result.reused_step0 and root and Path(root) != here:
            elsewhere.setdefault(root, []).append(result.step)
    return [f"step(s) {', '.join(map(str, steps))} were computed earlier from the data at "
            f"{root}; the data at {here} has the same content (digest {spec.data.digest}, "
            "part of the run's identity), so their results are reused, not recomputed"
            for root, steps in elsewhere.items()]


def run(args: argparse.Namespace) -> int:
    steps = parse_steps(args.steps)
    spec = build_spec(args, resolve_data=False)
    if spec.data.synthetic:
        print(f"no data configured: running on the embedded synthetic dataset {spec.data.dataset} "
              "(real data: --data-root PATH or --dataset voc|ade)", flush=True)
    spec = spec.with_data(log=lambda message: print(message, flush=True))
    from bench.engine.runner import Runner  # torch is imported only once arguments are valid

    runner = Runner(spec, log=lambda message: print(message, flush=True))
    run_dir = runner.run_dir
    protocol = runner.protocol
    print(f"run: {spec.protocol.name} / {spec.method} / seed {spec.seed} / {spec.run_hash} on "
          f"{runner.source.describe()}")
    print("protocol: " + ", ".join(f"{k}={v}" for k, v in protocol.knobs().items()))
    params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
    print(f"method: {spec.method}" + (f" ({params})" if params else "")
          + f"; recipe {spec.recipe_name}")
    done = run_dir.done_steps(protocol.num_steps)
    if done and len(done) == protocol.num_steps:
        print(f"all {protocol.num_steps} steps are already done in {run_dir.path}: nothing to "
              "train")
    elif done or run_dir.exists():
        print(f"resuming {run_dir.path}: steps done {done or 'none'}")
    else:
        for note in new_run_notes(spec, run_dir):
            print(note)
    results = runner.run(steps)
    for note in other_root_notes(spec, run_dir, runner.source, results):
        print(note)
    notes = {r.step: ("shared step 0 reused" if r.reused_step0 else
                      "trained" if r.trained else "done earlier") for r in results}
    if results:
        print()
        print("\n".join(result_table([r.record for r in results], notes)))
        convention = ("background counted in old and all (SDR)" if protocol.background_in_old_all
                      else "foreground only (MiB)")
        print(f"mIoU in %, {convention}; evaluation on {protocol.eval_crop} crops")
    print(f"run directory: {run_dir.path}")
    return 0
