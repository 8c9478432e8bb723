"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A crash or an error halfway never leaves a half-written label table, model or result where the
old one was: the previous file stays until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from napari_chromosome_sort.files.safety import spreadsheet_safe


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask() briefly changes process state, which is unsafe in threads.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension); it replaces ``path`` when the
    block succeeds and is deleted when it raises."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
        )
    except OSError as error:  # named after the file the user asked for, not the temporary one
        raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync(tmp)  # on the disk before it gets the final name (a full disk raises here)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync(path) -> None:
    """Flush a written file to the disk (a folder, a link or a platform without it: nothing)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (fsync before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_csv_atomic(table, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV (no index) atomically; text cells a spreadsheet would run
    as a formula get a leading ``'`` (:func:`.safety.spreadsheet_safe`)."""
    with atomic_path(path) as tmp:
        formula_safe(table).to_csv(tmp, index=False)
    return Path(path)


def formula_safe(table):
    """``table`` with its text cells made safe for spreadsheets (a copy when any changed)."""
    import pandas as pd

    text = [
        c
        for c in table.columns
        if pd.api.types.is_object_dtype(table[c]) or pd.api.types.is_string_dtype(table[c])
    ]
    if not text:
        return table
    table = table.copy()
    for column in text:
        table[column] = table[column].map(spreadsheet_safe)
    return table
