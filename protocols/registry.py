"""Protocol names -> Protocol values.

Names: `<dataset>-<setting>[-<mode>][@order=<seed>]`, e.g. `voc-15-1` (overlapped, today's common
convention), `voc-15-1-disjoint`, `ade-100-10-sequential`, `voc-15-1@order=3`. An alternative class
order permutes the non-background classes of the setting's order with a seeded generator, for
order-robustness studies.
"""

from __future__ import annotations

import difflib
import random
import re
from functools import cache

from bench.errors import BenchError
from protocols.protocol import MODES, Protocol
from protocols.settings import SETTINGS, Setting

DATASET_DEFAULTS: dict[str, dict[str, bool]] = {
    "voc": {"void_as_background": True, "background_ignored_at_test": False},
    "ade": {"void_as_background": False, "background_ignored_at_test": True},
}

_NAME = re.compile(
    r"^(?P<dataset>[a-z]+)-(?P<setting>[0-9a-z-]+?)"
    r"(?:-(?P<mode>overlap|disjoint|sequential))?(?:@order=(?P<order>\d+))?$"
)


def canonical_name(dataset: str, setting: str, mode: str, order_seed: int | None = None) -> str:
    name = f"{dataset}-{setting}" + ("" if mode == "overlap" else f"-{mode}")
    return name if order_seed is None else f"{name}@order={order_seed}"


def permuted_order(class_order: tuple[int, ...], seed: int) -> tuple[int, ...]:
    """Background first, the other classes shuffled by `random.Random(seed)` (stable in CPython)."""
    rest = list(class_order[1:])
    random.Random(seed).shuffle(rest)
    return (class_order[0], *rest)


def _build(dataset: str, setting: Setting, mode: str, order_seed: int | None) -> Protocol:
    order = setting.class_order
    if order_seed is not None:
        order = permuted_order(order, order_seed)
    knobs = dict(DATASET_DEFAULTS[dataset])
    if mode == "sequential":
        # Sequential keeps old labels and ignores void: nothing is turned into background.
        knobs["void_as_background"] = False
    return Protocol(
        name=canonical_name(dataset, setting.name, mode, order_seed),
        dataset=dataset,
        setting=setting.name,
        mode=mode,
        class_order=order,
        step_sizes=setting.step_sizes,
        order_seed=order_seed,
        **knobs,
    )


def protocol_names(dataset: str | None = None) -> list[str]:
    """Every canonical name (default class orders), VOC first."""
    return [
        canonical_name(ds, setting, mode)
        for ds, settings in SETTINGS.items()
        if dataset in (None, ds)
        for setting in settings
        for mode in MODES
    ]


@cache
def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; an unknown name raises BenchError with the closest names."""
    match = _NAME.match(name.strip().lower())
    if match:
        dataset, setting_name = match["dataset"], match["setting"]
        setting = SETTINGS.get(dataset, {}).get(setting_name)
        if setting is not None:
            mode = match["mode"] or "overlap"
            order = None if match["order"] is None else int(match["order"])
            return _build(dataset, setting, mode, order)
    base = name.split("@", 1)[0]
    close = difflib.get_close_matches(base, protocol_names(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise BenchError(
        f"unknown protocol {name!r}.{hint} `bench list protocols` shows every name; "
        "add `@order=N` for a seeded class order."
    )


def all_protocols() -> list[Protocol]:
    return [get_protocol(name) for name in protocol_names()]
