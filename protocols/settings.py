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


def _ade_settings() -> dict[str, Setting]:
    labels = 151
    settings = [
        _standard("100-50", labels, [101, 50]),
        _standard("100-10", labels, [101] + [10] * 5),
        _standard("50-50", labels, [51, 50, 50]),
        _standard("100-5", labels, [101] + [5] * 10),
        _standard("offline", labels, [151]),
    ]
    return {s.name: s for s in settings}


SETTINGS: dict[str, dict[str, Setting]] = {"voc": _voc_settings(), "ade": _ade_settings()}
