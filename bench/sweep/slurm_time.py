"""Slurm time limits (`--time`) as minutes, for submitit's `timeout_min`."""

from __future__ import annotations

import math
import re

from bench.errors import BenchError

_PATTERN = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def minutes(text: str) -> int:
    """Slurm's forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (rounded up to whole minutes)."""
    match = _PATTERN.match(str(text).strip())
    if not match:
        raise BenchError(f"invalid time limit {text!r}: use minutes, H:M:S or D-H:M:S "
                         "(as sbatch --time)")
    days, first, second, third = match.groups()
    values = [int(v) for v in (first, second, third) if v is not None]
    if days is not None:
        hours, mins, secs = (values + [0, 0])[:3]
        total = int(days) * 1440 + hours * 60 + mins + secs / 60
    elif len(values) == 1:
        total = values[0]
    elif len(values) == 2:
        total = values[0] + values[1] / 60
    else:
        total = values[0] * 60 + values[1] + values[2] / 60
    if total <= 0:
        raise BenchError(f"time limit {text!r} is zero; give a positive limit")
    return math.ceil(total)
