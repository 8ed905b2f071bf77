"""Checks of the paths a user gives (runs root, output folders and files, CSS_BENCH_CACHE, data
root), made before anything is read or written: one line naming the path and the fix."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def _blocking_file(path: Path) -> Path | None:
    """The path itself, or the first of its parents, that exists as something other than a
    folder (a folder could then never be created there); None when there is none."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def folder(path: str | Path, what: str, fix: str) -> Path:
    """A folder that exists or can be created: `what` names it (e.g. `--runs-root X`), `fix`
    says what to pass instead."""
    path = Path(path).expanduser()
    blocking = _blocking_file(path)
    if blocking == path:
        raise BenchError(f"{what} is a file, not a folder; {fix}")
    if blocking is not None:
        raise BenchError(f"{what} cannot be a folder: {blocking} is a file; {fix}")
    return path


def output_folder(path: str | Path, option: str) -> Path:
    """An output folder, created (with its parents) and checked to be writable."""
    path = folder(path, f"{option} {path}", f"pass a folder for {option} (created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(f"{option} {path} cannot be created ({error.strerror}); pass a "
                         f"writable folder for {option}") from None
    if not os.access(path, os.W_OK):
        raise BenchError(f"{option} {path} is not writable; pass a writable folder for {option}")
    return path


def output_file(path: str | Path, option: str) -> Path:
    """A file to write: not a folder, its folder created."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise BenchError(f"{option} {path} is a folder; pass a file name for {option} "
                         f"(e.g. {path / 'paper_tables.md'})")
    output_folder(path.parent if str(path.parent) else Path("."), f"the folder of {option}")
    return path


def runs_root(path: str | Path) -> Path:
    return folder(path, f"--runs-root {path}",
                  "pass a folder for --runs-root (created if missing)")


def cache_folder() -> None:
    """CSS_BENCH_CACHE, where the embedded data and label indexes are kept, if set."""
    value = os.environ.get("CSS_BENCH_CACHE")
    if value is not None:
        if not value.strip():
            raise BenchError("CSS_BENCH_CACHE is set but empty; set it to a folder or unset it "
                             "(default ~/.cache/css-bench)")
        folder(value, f"CSS_BENCH_CACHE={value}",
               "set it to a folder (created if missing) or unset it (default "
               "~/.cache/css-bench)")


def data_root(path: str | Path | None) -> None:
    """A real dataset root given with --data-root (its layout is checked by the data layer)."""
    if path is None:
        return
    path = Path(path).expanduser()
    if not path.exists():
        raise BenchError(f"--data-root {path} does not exist; pass the folder of the dataset "
                         "(for VOC: the one holding JPEGImages/, or VOCdevkit/VOC2012 inside it)")
    if not path.is_dir():
        raise BenchError(f"--data-root {path} is a file, not a folder; pass the folder of the "
                         "dataset (for VOC: the one holding JPEGImages/)")
