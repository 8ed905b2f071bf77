"""Seeds derived from a run's seed and a position (step, epoch, purpose): stable across
processes and machines (Python's hash() is salted per process)."""

from __future__ import annotations


def derived_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from parts (FNV-1a over their text)."""
    value = 1469598103934665603
    for char in "/".join(str(p) for p in parts).encode():
        value = ((value ^ char) * 1099511628211) % (1 << 63)
    return value
