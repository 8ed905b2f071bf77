"""Reading and writing the store's files: JSON and torch payloads, atomically, with errors that
name the file and what to do about it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.store.atomic import write_atomic, write_text_atomic


def write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def read_json(path: Path, fix: str = "") -> Any:
    """The JSON in `path`; an unreadable file is a BenchError naming it and `fix`."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchError(f"{path} is unreadable ({error})" + (f"; {fix}" if fix else "")) from None


def save_torch(path: Path, payload: Any) -> None:
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_torch(path: Path, fix: str = "") -> Any:
    """A torch payload; an unreadable file is a BenchError naming it and `fix`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # whatever a damaged file makes the unpickler raise
        if isinstance(error, FileNotFoundError) or not path.exists():
            raise BenchError(f"checkpoint {path} is missing" + (f"; {fix}" if fix else "")) \
                from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchError(f"checkpoint {path} is unreadable ({first})"
                         + (f"; {fix}" if fix else "")) from None
