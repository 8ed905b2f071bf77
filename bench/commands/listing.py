"""`bench list protocols [PATTERN]`: every protocol name with its steps and classes."""

from __future__ import annotations

import argparse
import fnmatch

from bench.errors import BenchError
from protocols import get_protocol, protocol_names
from protocols.protocol import format_ranges
from protocols.registry import DATASET_DEFAULTS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list protocols (or methods)")
    parser.add_argument("what", choices=["protocols", "methods"], help="what to list")
    parser.add_argument("pattern", nargs="?", default="*",
                        help="glob over names, e.g. 'voc-15-*' or '*-disjoint'")
    parser.set_defaults(handler=run)


def protocol_lines(pattern: str = "*") -> list[str]:
    names = [n for n in protocol_names() if fnmatch.fnmatch(n, pattern)]
    if not names:
        raise BenchError(f"no protocol matches {pattern!r}; `bench list protocols` shows them all")
    width = max(len(n) for n in names) + 2
    lines = []
    shown = {name.split("-", 1)[0] for name in names}
    for dataset, knobs in DATASET_DEFAULTS.items():
        if dataset not in shown:
            continue
        settings = ", ".join(f"{k}={v}" for k, v in knobs.items())
        lines.append(f"# {dataset}: {settings} (sequential: void ignored, old labels kept)")
    lines.append("# metrics: background in old/all (SDR convention); evaluation on a centre crop")
    lines.append("# any name + '@order=N': the non-background classes in a seeded order")
    for name in names:
        protocol = get_protocol(name)
        steps = " | ".join(format_ranges(protocol.step_classes(s))
                           for s in range(protocol.num_steps))
        count = f"{protocol.num_steps} step" + ("s" if protocol.num_steps > 1 else "")
        lines.append(f"{name:<{width}}{protocol.mode:<12}{count:<10}{steps}")
    return lines


def method_lines(pattern: str = "*") -> list[str]:
    from methods import get_method, method_names
    from methods.step0 import recipe_of

    names = method_names(pattern)
    if not names:
        raise BenchError(f"no method matches {pattern!r}; `bench list methods` shows them all")
    lines = []
    indent = " " * 10
    for name in names:
        method = get_method(name)
        lines.append(f"{name:<10}{method.description}")
        lines.append(f"{indent}step 0: recipe {method.step0} ({recipe_of(method).description}); "
                     f"trainer recipe on real data: {method.recipe}")
        if not method.defaults:
            lines.append(f"{indent}hyperparameters: none")
        for key, value in method.defaults.items():
            source = method.sources.get(key)
            allowed = method.choices.get(key)
            text = (f"{key}: {' | '.join(map(str, allowed))} (default {value})" if allowed
                    else f"{key} = {value}")
            lines.append(f"{indent}{text}" + (f"  [{source}]" if source else ""))
        for protocol_glob, values in method.per_protocol.items():
            changed = ", ".join(f"{k}={v}" for k, v in values.items())
            lines.append(f"{indent}on {protocol_glob}: {changed}")
        for recipe, values in method.per_recipe.items():
            changed = ", ".join(f"{k}={v}" for k, v in values.items())
            lines.append(f"{indent}with trainer={recipe}: {changed}")
    return lines


def run(args: argparse.Namespace) -> int:
    lister = protocol_lines if args.what == "protocols" else method_lines
    print("\n".join(lister(args.pattern)))
    return 0
