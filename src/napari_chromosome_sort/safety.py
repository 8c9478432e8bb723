"""Names and paths read from files (model metadata, manifest.csv, corrections.csv) are checked
here before they touch the disk: a class name never becomes a path outside its output folder,
and a path from a table never reaches a file outside its dataset folder.

Qt-free and torch-free; every refusal is a :class:`ChromosortError` naming the problem.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import ChromosortError

MAX_NAME_LENGTH = 100
"""Longest class name (characters); it becomes a folder name, and file systems allow 255 bytes."""

MAX_FILE_NAME_BYTES = 200
"""Longest output file name we make (bytes, UTF-8); longer ones are shortened with a hash."""


def _shown(text: str, limit: int = 60) -> str:
    """``text`` for a message: repr'd (control characters visible), cut to ``limit``."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 5]}...{shown[-2:]}"


def check_name(name, what: str = "class name") -> str:
    """``name`` if it is safe as one folder or file name, else ChromosortError.

    Safe: a non-empty string of at most :data:`MAX_NAME_LENGTH` characters, without path
    separators (``/``, ``\\``), a drive colon, control characters, leading/trailing spaces, and
    not starting with ``.`` (no ``..``, no hidden folders)."""
    if not isinstance(name, str):
        raise ChromosortError(f"{what} {_shown(str(name))} is not text ({type(name).__name__})")
    if not name.strip():
        raise ChromosortError(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ChromosortError(
            f"{what} {_shown(name)} is {len(name)} characters long; at most {MAX_NAME_LENGTH}"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ChromosortError(f"{what} {_shown(name)} contains control characters")
    if any(sep in name for sep in ("/", "\\", ":")):
        raise ChromosortError(
            f"{what} {_shown(name)} contains a path separator ('/', '\\' or ':'); "
            "a name must not point to another folder"
        )
    if name.startswith(".") or name != name.strip():
        raise ChromosortError(
            f"{what} {_shown(name)} starts with '.' or has leading/trailing spaces"
        )
    return name


def check_names(names: Iterable, what: str = "class name") -> list[str]:
    """Every name checked with :func:`check_name`; duplicates refused."""
    checked = [check_name(n, what) for n in names]
    seen: set[str] = set()
    for name in checked:
        if name in seen:
            raise ChromosortError(f"{what} {_shown(name)} appears twice")
        seen.add(name)
    return checked


def check_relative(text, what: str = "path") -> PurePosixPath:
    """A relative path read from a table: no absolute path, drive, ``..``, empty part or
    control character (checked on the text alone, no disk access)."""
    if not isinstance(text, str) or not text.strip():
        raise ChromosortError(f"{what} {_shown(str(text))} is empty or not text")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ChromosortError(f"{what} {_shown(text)} contains control characters")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).anchor:
        raise ChromosortError(f"{what} {_shown(text)} is an absolute path; expected one inside")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if ".." in parts or not parts:
        raise ChromosortError(f"{what} {_shown(text)} climbs out of its folder ('..')")
    return PurePosixPath(*parts)


def inside(root, relative, what: str = "path") -> Path:
    """``root / relative`` after checking that it stays inside ``root`` (symbolic links
    resolved); ChromosortError naming ``what`` otherwise."""
    rel = check_relative(str(relative), what)
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise ChromosortError(f"{what} {_shown(str(relative))} leads outside {base}")
    return Path(root) / rel


def parent_inside(root, path: Path, what: str = "output") -> Path:
    """``path`` when its folder lies inside ``root`` after resolving links (the file itself may
    be a link pointing elsewhere, as ``--link sym`` makes); ChromosortError otherwise."""
    base = Path(root).resolve()
    folder = Path(path).parent.resolve()
    if folder != base and base not in folder.parents:
        raise ChromosortError(f"{what} {Path(path).name!r} would be written outside {base}")
    return Path(path)


def flat_names(relatives: Iterable, suffix: str = "") -> list[str]:
    """One distinct, length-limited file name per relative path: parts joined by ``__``
    (``x/a.jpg`` -> ``x__a.jpg``), ``suffix`` inserted before the extension, and a later name
    that collides with an earlier one (``x/a.jpg`` and ``x__a.jpg``) gets ``-2``, ``-3``...
    Over :data:`MAX_FILE_NAME_BYTES`, the name is shortened and a hash of the path added."""
    names: list[str] = []
    used: set[str] = set()
    for rel in relatives:
        rel = PurePosixPath(str(rel).replace(os.sep, "/"))
        stem = "__".join([*rel.parts[:-1], rel.stem]) + suffix
        ext = rel.suffix
        if len((stem + ext).encode()) > MAX_FILE_NAME_BYTES:
            digest = hashlib.sha1(str(rel).encode()).hexdigest()[:10]
            stem = f"{stem.encode()[:120].decode(errors='ignore')}-{digest}"
        name, n = stem + ext, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}{ext}"
        used.add(name.lower())
        names.append(name)
    return names


def unique_in(folder: Path, name: str) -> Path:
    """``folder / name``, or ``folder / <stem>_<n><ext>`` for the first ``n`` not yet taken."""
    path = folder / name
    stem, ext = Path(name).stem, Path(name).suffix
    n = 1
    while path.exists() or path.is_symlink():
        path = folder / f"{stem}_{n}{ext}"
        n += 1
    return path
