"""The incremental settings of Pascal VOC 2012 and ADE20K, as (class order, step sizes).

Settings follow MiB (Cermelli et al., CVPR 2020), PLOP (Douillard et al., CVPR 2021) and SDR
(Michieli & Zanuttigh, CVPR 2021): `15-1` learns labels 0-15 first (background included), then one
class per step. `19-1b` learns every class but 5 (bottle) first, then bottle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    class_order: tuple[int, ...]
    step_sizes: tuple[int, ...]


def _standard(name: str, num_labels: int, step_sizes: list[int]) -> Setting:
    return Setting(name, tuple(range(num_labels)), tuple(step_sizes))


def _voc_settings() -> dict[str, Setting]:
    labels = 21
    bottle_last = tuple(c for c in range(labels) if c != 5) + (5,)
    settings = [
        _standard("19-1", labels, [20, 1]),
        _standard("15-5", labels, [16, 5]),
        _standard("15-1", labels, [16] + [1] * 5),
        _standard("10-1", labels, [11] + [1] * 10),
        _standard("10-10", labels, [11, 10]),
        _standard("10-5-5", labels, [11, 5, 5]),
        _standard("5-3", labels, [6] + [3] * 5),
        Setting("19-1b", bottle_last, (20, 1)),
        _standard("offline", labels, [21]),
    ]
    return {s.name: s for s in settings}


# The ADE class orders b and c of MiB (fcdl94/MiB tasks.py `tasks_ade`: 100-50b/c, 100-10b/c,
# 50b/c, here 50-50b/c): the classes of every step after step 0, each step's classes ascending
# as listed there; step 0 holds background and the remaining classes, ascending.
ADE_ORDERS: dict[str, tuple[tuple[int, ...], ...]] = {
    "100-50b": (
        (2, 4, 7, 11, 15, 16, 17, 20, 30, 35, 37, 41, 50, 51, 52, 59, 64, 65, 66, 67, 68,
         72, 73, 78, 79, 83, 85, 88, 89, 92, 94, 97, 98, 102, 108, 110, 111, 112, 114, 115,
         118, 122, 124, 127, 137, 138, 139, 141, 145, 146),
    ),
    "100-50c": (
        (2, 3, 4, 7, 15, 18, 21, 22, 38, 39, 42, 47, 49, 51, 53, 55, 58, 59, 60, 62, 64, 72,
         73, 75, 80, 88, 89, 91, 92, 93, 100, 101, 103, 104, 107, 108, 113, 116, 117, 122,
         125, 127, 130, 131, 137, 140, 141, 145, 148, 150),
    ),
    "100-10b": (
        (11, 16, 50, 64, 66, 73, 89, 92, 145, 146),
        (30, 37, 51, 52, 72, 85, 98, 114, 115, 138),
        (2, 35, 65, 97, 110, 111, 112, 118, 124, 141),
        (4, 7, 15, 41, 67, 78, 79, 88, 108, 139),
        (17, 20, 59, 68, 83, 94, 102, 122, 127, 137),
    ),
    "100-10c": (
        (3, 4, 7, 18, 39, 64, 73, 101, 113, 137),
        (47, 51, 55, 60, 62, 80, 116, 127, 140, 148),
        (22, 42, 49, 58, 59, 89, 91, 92, 108, 125),
        (2, 38, 53, 100, 104, 117, 130, 131, 141, 145),
        (15, 21, 72, 75, 88, 93, 103, 107, 122, 150),
    ),
    "50-50b": (
        (3, 5, 6, 8, 10, 12, 13, 19, 21, 23, 26, 31, 33, 34, 36, 39, 40, 43, 44, 53, 55, 57,
         60, 70, 71, 80, 86, 87, 91, 95, 99, 101, 105, 106, 107, 113, 116, 120, 125, 126,
         131, 132, 133, 140, 142, 143, 147, 148, 149, 150),
        (2, 4, 7, 11, 15, 16, 17, 20, 30, 35, 37, 41, 50, 51, 52, 59, 64, 65, 66, 67, 68,
         72, 73, 78, 79, 83, 85, 88, 89, 92, 94, 97, 98, 102, 108, 110, 111, 112, 114, 115,
         118, 122, 124, 127, 137, 138, 139, 141, 145, 146),
    ),
    "50-50c": (
        (1, 6, 8, 9, 14, 24, 25, 26, 29, 34, 35, 36, 40, 41, 44, 45, 48, 50, 54, 61, 63, 67,
         68, 71, 78, 81, 84, 85, 90, 94, 95, 96, 97, 98, 99, 102, 106, 112, 114, 115, 118,
         120, 121, 123, 124, 126, 135, 136, 139, 149),
        (2, 3, 4, 7, 15, 18, 21, 22, 38, 39, 42, 47, 49, 51, 53, 55, 58, 59, 60, 62, 64, 72,
         73, 75, 80, 88, 89, 91, 92, 93, 100, 101, 103, 104, 107, 108, 113, 116, 117, 122,
         125, 127, 130, 131, 137, 140, 141, 145, 148, 150),
    ),

}


def _ordered(name: str, num_labels: int, later: tuple[tuple[int, ...], ...]) -> Setting:
    taken = {c for step in later for c in step}
    first = tuple(c for c in range(num_labels) if c not in taken)
    order = first + tuple(c for step in later for c in step)
    return Setting(name, order, (len(first), *(len(step) for step in later)))


def _ade_settings() -> dict[str, Setting]:
    labels = 151
    settings = [
        _standard("100-50", labels, [101, 50]),
        _standard("100-10", labels, [101] + [10] * 5),
        _standard("50-50", labels, [51, 50, 50]),
        _standard("100-5", labels, [101] + [5] * 10),
        _standard("offline", labels, [151]),
        *(_ordered(name, labels, later) for name, later in ADE_ORDERS.items()),
    ]
    return {s.name: s for s in settings}


SETTINGS: dict[str, dict[str, Setting]] = {"voc": _voc_settings(), "ade": _ade_settings()}
