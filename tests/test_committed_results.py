"""The committed embedded leaderboard's records are the same on any machine."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "synthetic" / "runs"


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_no_committed_record_or_spec_holds_an_absolute_path():
    files = sorted(COMMITTED.rglob("*.json"))
    assert files, "results/synthetic/runs holds the committed leaderboard's runs"
    found = [(str(path.relative_to(ROOT)), text) for path in files
             for text in strings(json.loads(path.read_text()))
             if PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive
             or text.startswith("~")]
    assert found == []
