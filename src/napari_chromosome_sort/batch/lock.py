"""One batch run per output folder: a lock on ``OUT_DIR/.chromosort-batch.lock`` that the
operating system releases when its process ends, even when the run is killed."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

from napari_chromosome_sort.errors import ChromosortError

LOCK = ".chromosort-batch.lock"


def _try_lock(handle) -> bool:
    """An exclusive, non-blocking lock on an open file; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(handle) -> str:
    """The lock file's text: which process holds it ("" when unreadable)."""
    try:
        handle.seek(0)
        return handle.read(200).strip()
    except OSError:
        return ""


@contextlib.contextmanager
def output_lock(out_dir: Path):
    """Hold ``out_dir``'s batch lock for the block; ChromosortError when another run has it.
    The lock dies with its process, so a killed run never blocks the next one."""
    path = Path(out_dir) / LOCK
    try:  # never through a link: the lock file is truncated below
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        handle = os.fdopen(os.open(path, flags, 0o666), "a+", encoding="utf-8", errors="replace")
    except OSError as error:
        raise ChromosortError(f"cannot lock output folder {out_dir}: {error}") from None
    with handle:
        if not _try_lock(handle):
            holder = _holder(handle) or "another process"
            raise ChromosortError(
                f"another chromosort batch ({holder}) is writing to {out_dir}; wait for it to "
                "finish or choose another output folder"
            )
        text = _holder(handle)
        if text and not text.startswith("pid "):
            raise ChromosortError(f"{path} is not chromosort's lock file; left alone")
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        yield path  # closing the file releases the lock
