"""Sweep manifests: what was submitted, as which job, for which run (JSON under the runs root).

`bench status` and a later `bench sweep` read them; the store, not the manifest, says what is
done.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.store.files import write_json

SWEEPS_DIR = "_sweeps"


def sweeps_dir(runs_root: str | Path) -> Path:
    return Path(runs_root) / SWEEPS_DIR


def new_name() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S") + f"-{os.getpid()}"


def write(runs_root: str | Path, manifest: dict[str, Any]) -> Path:
    path = sweeps_dir(runs_root) / f"{manifest['name']}.json"
    write_json(path, manifest)
    return path


def find(name_or_path: str, runs_root: str | Path) -> Path:
    """A manifest by path, or by name under the runs root's `_sweeps/`."""
    candidates = [Path(name_or_path), sweeps_dir(runs_root) / name_or_path,
                  sweeps_dir(runs_root) / f"{name_or_path}.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in sweeps_dir(runs_root).glob("*.json"))
    raise BenchError(f"no sweep manifest {name_or_path!r} (looked in {sweeps_dir(runs_root)}); "
                     f"known sweeps: {', '.join(known) or 'none'}")


def read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(f"sweep manifest {path} is unreadable ({error})") from None


def all_manifests(runs_root: str | Path) -> list[dict[str, Any]]:
    return [read(p) for p in sorted(sweeps_dir(runs_root).glob("*.json"))]
