"""Protocol names -> Protocol values.

Names: `<dataset>-<setting>[-<mode>][@order=<seed>]`, e.g. `voc-15-1` (overlapped, today's common
convention), `voc-15-1-disjoint`, `ade-100-10-sequential`, `voc-15-1@order=3`,
`ade-100-50-partition` (ADE only, the settings MiB ships reference files for:
PARTITION_SETTINGS). An alternative class order permutes the non-background classes of the
setting's order with a seeded generator, for order-robustness studies.
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
    r"(?:-(?P<mode>overlap|disjoint|sequential|partition))?(?:@order=(?P<order>\d+))?$"
)


# The settings with a partition protocol: those whose image partition MiB ships
# (fcdl94/MiB data/ade/<task>/train-<step>.npy: tasks 100-50, 100-10, 50 (= 50-50) and their
# b orders 100-50b, 100-10b, 50b). No file exists for 100-5 or the c orders: no partition there.
PARTITION_SETTINGS: dict[str, tuple[str, ...]] = {
    "ade": ("100-50", "100-10", "50-50", "100-50b", "100-10b", "50-50b")}


def has_mode(dataset: str, setting: str, mode: str) -> bool:
    """Whether `<dataset>-<setting>` exists in `mode` (partition: where reference files exist)."""
    return mode != "partition" or setting in PARTITION_SETTINGS.get(dataset, ())


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
        if has_mode(ds, setting, mode)
    ]


@cache
def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; an unknown name raises BenchError with the closest names."""
    match = _NAME.match(name.strip().lower())
    if match:
        dataset, setting_name = match["dataset"], match["setting"]
        setting = SETTINGS.get(dataset, {}).get(setting_name)
        mode = match["mode"] or "overlap"
        # a reference partition holds for its own class order only
        seeded_partition = mode == "partition" and match["order"] is not None
        if setting is not None and has_mode(dataset, setting_name, mode) and not seeded_partition:
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
