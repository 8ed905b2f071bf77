"""Exclusive file locks between processes (flock), saying who holds them when one must wait.

The lock is held on an open file, so a process killed at any moment releases it; the file only
names the last holder (process id, host, since when) for the message of the next one to wait.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.errors import BenchError

_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
        return f"process {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def exclusive(path: Path, what: str, on_wait: Callable[[str], None],
              not_writable: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder). When another process holds
    it, `on_wait` is told who, and the call waits for it. A store where the lock cannot be
    created is a BenchError: `not_writable` says what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        if error.errno in _NOT_WRITABLE or isinstance(error, PermissionError):
            raise BenchError(f"cannot create the lock file {path} ({error.strerror}): "
                             f"{not_writable}") from None
        raise
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"{what} is being computed by {_holder(path)}: waiting for it to finish "
                    "(then what it finished is read, not computed again)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
