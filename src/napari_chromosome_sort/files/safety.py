"""Names and paths read from files (model metadata, manifest.csv, corrections.csv) are checked
here before they touch the disk: a class name never becomes a path outside its output folder,
and a path from a table never reaches a file outside its dataset folder.

Qt-free and torch-free; every refusal is a :class:`ChromosortError` naming the problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from napari_chromosome_sort.errors import ChromosortError

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
    if any(_unsafe_char(ch) for ch in name):
        raise ChromosortError(
            f"{what} {_shown(name)} contains control or text-direction characters"
        )
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
    seen: dict[str, str] = {}
    for name in checked:
        if name in seen:
            raise ChromosortError(f"{what} {_shown(name)} appears twice")
        folder = folder_name(name).lower()
        if folder in seen.values():
            other = next(k for k, v in seen.items() if v == folder)
            raise ChromosortError(
                f"{what}s {_shown(other)} and {_shown(name)} would share one folder"
            )
        seen[name] = folder
    return checked


def folder_name(name: str) -> str:
    """The folder a class name is stored in (letters, digits, ``-_.`` and spaces kept)."""
    import re

    return re.sub(r"[^\w\-. ]+", "_", str(name).strip()).strip(" .")


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


# ------------------------------------------------------------------ the write rule
#
# Every file the tool writes goes through :func:`output_path` (checked: inside the folder given,
# no link on the way, not a file of someone else unless ``overwrite``) and
# :func:`.atomic.atomic_path` (temporary file beside it, fsync, rename); every deletion through
# :func:`remove_owned` (only inside a folder holding our marker, only names of ours).

MARKER = ".chromosort-owned"
"""A folder holding this file was made by the tool; it lists the files written there."""

_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def is_link(path) -> bool:
    """True when ``path`` itself is a symbolic link (or a Windows junction)."""
    path = Path(path)
    return path.is_symlink() or bool(getattr(path, "is_junction", lambda: False)())


def no_links(root, path, what: str = "output") -> Path:
    """``path`` when it lies inside ``root`` and no folder between them (nor ``path`` itself) is
    a symbolic link; ChromosortError otherwise. ``root`` itself may be a link the user gave."""
    root, path = Path(root), Path(path)
    base = root.resolve()
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        try:
            rel = path.resolve(strict=False).relative_to(base)
            return no_links(base, base / rel, what)
        except ValueError:
            raise ChromosortError(f"{what} {str(path)!r} lies outside {base}") from None
    current = base
    for part in rel.parts:
        if part in ("..", "."):
            raise ChromosortError(f"{what} {str(path)!r} climbs out of {base}")
        current = current / part
        if is_link(current):
            raise ChromosortError(
                f"{what} {current} is a link and may lead outside {base}; the tool never writes "
                "or deletes through a link"
            )
    return path


def _read_json_nofollow(path: Path) -> dict:
    """A JSON object from ``path`` ({} when absent, a link, unreadable or not an object)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(64 * 2**20)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def owns(folder) -> bool:
    """True when ``folder`` is a real folder (no link) that the tool made (its marker says so)."""
    folder = Path(folder)
    return (
        folder.is_dir()
        and not is_link(folder)
        and _read_json_nofollow(folder / MARKER).get("created") is True
    )


def claim_folder(folder, root=None, what: str = "output folder") -> bool:
    """Make ``folder`` (and its parents) if needed and mark it as the tool's when the tool made it
    or it is empty; returns whether the tool owns it. ``root``: the folder the user gave, no link
    allowed below it."""
    folder = Path(folder)
    if root is not None:
        no_links(root, folder, what)
    elif is_link(folder):
        folder = folder.resolve()  # a link the user gave as the folder itself
    if owns(folder):
        return True
    try:
        folder.mkdir(parents=True, exist_ok=True)
        empty = not any(folder.iterdir())
    except OSError as error:
        raise ChromosortError(f"cannot create {what} {folder}: {error}") from None
    if empty:
        mark_owned(folder)
    return empty


def mark_owned(folder) -> None:
    """Write the marker that says the tool made ``folder``."""
    # a cycle: atomic imports this module
    from napari_chromosome_sort.files.atomic import write_bytes_atomic

    write_bytes_atomic(Path(folder) / MARKER, b'{"created": true}\n')


LEDGER_ENV = "CHROMOSORT_CACHE_DIR"
MAX_LEDGER_ENTRIES = 20_000  # the oldest are forgotten (their files need --overwrite)


def _ledger_path() -> Path:
    """The record of files the tool wrote (path -> sha256), in the user cache (never in the
    user's folders)."""
    env = os.environ.get(LEDGER_ENV)
    if env:
        return Path(env) / "written-files.json"
    try:
        from platformdirs import user_cache_dir
    except ImportError:
        return Path.home() / ".cache" / "napari-chromosome-sort" / "written-files.json"
    return Path(user_cache_dir("napari-chromosome-sort", appauthor=False)) / "written-files.json"


def _digest(path: Path) -> str | None:
    """sha256 of a file's bytes (of a link's target text for links); None when unreadable."""
    try:
        if path.is_symlink():
            return "link:" + hashlib.sha256(os.readlink(path).encode()).hexdigest()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _ledger_key(path) -> str:
    """``path`` in the record of written files: its folder's links resolved, its name kept."""
    path = Path(os.path.abspath(path))
    return str(Path(os.path.realpath(path.parent)) / path.name)


def written_by_us(path) -> bool:
    """True when ``path`` is a file the tool wrote and nobody changed since (the record of
    written files holds it with these bytes)."""
    path = Path(os.path.abspath(path))
    recorded = _read_json_nofollow(_ledger_path()).get(_ledger_key(path))
    return recorded is not None and recorded == _digest(path)


def record_written(paths) -> None:
    """Note ``paths`` (files just written) with their bytes' hashes in the record of written
    files, so that a later run may replace them without ``--overwrite``."""
    # a cycle: atomic imports this module
    from napari_chromosome_sort.files.atomic import write_bytes_atomic

    ledger_path = _ledger_path()
    ledger = _read_json_nofollow(ledger_path)
    for path in paths:
        path = Path(os.path.abspath(path))
        digest = _digest(path)
        if digest is not None:
            key = _ledger_key(path)
            ledger.pop(key, None)  # newest last: the oldest are forgotten first
            ledger[key] = digest
    while len(ledger) > MAX_LEDGER_ENTRIES:
        ledger.pop(next(iter(ledger)))
    with contextlib.suppress(OSError):  # an unwritable cache costs the next run --overwrite
        ledger_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(ledger_path, json.dumps(ledger).encode())


def output_path(path, root=None, overwrite: bool = False, what: str = "output") -> Path:
    """``path`` checked for writing: inside ``root`` (default: its own folder) with no link on
    the way, not a link itself, and not an existing file the tool did not write unless
    ``overwrite``. ChromosortError naming the file otherwise."""
    path = Path(path)
    no_links(root if root is not None else path.parent, path.parent, what)
    if path.is_symlink() and not overwrite and not written_by_us(path):
        raise ChromosortError(
            f"{what} {path} is a link; the tool never writes through a link "
            "(remove it or pass --overwrite to replace the link itself)"
        )
    if path.is_dir() and not path.is_symlink():
        raise ChromosortError(f"{what} {path} is a folder, not a file")
    if path.exists() and not path.is_symlink() and not overwrite and not written_by_us(path):
        raise ChromosortError(
            f"{what} {path} exists and was not written by chromosort; "
            "choose another name or pass --overwrite"
        )
    _check_writable(path, what)
    return path


def _check_writable(path: Path, what: str) -> None:
    """ChromosortError, before any work, when ``path``'s folder (or the nearest existing one
    above it) cannot be written in."""
    folder = Path(os.path.abspath(path.parent))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ChromosortError(f"cannot write {what} {path}: folder {folder} is not writable")


def remove_owned(path, owner, names=None, what: str = "folder") -> None:
    """Delete ``path`` (a file or folder) only when it lies in ``owner``, a folder the tool made
    (:func:`owns`), with no link on the way, and (``names``: a pattern or set of allowed names)
    every file it holds is one of the tool's; ChromosortError otherwise."""
    import re
    import shutil

    path, owner = Path(path), Path(owner)
    if not owns(owner):
        raise ChromosortError(f"{owner} was not made by chromosort; {path.name} is left alone")
    no_links(owner, path, what)
    if not os.path.lexists(path):
        return

    def allowed(name: str) -> bool:
        if names is None or name == MARKER:
            return True
        if isinstance(names, str):
            return re.fullmatch(names, name) is not None
        return name in names

    if path.is_dir():
        for item in path.rglob("*"):
            if is_link(item) or (item.is_file() and not allowed(item.name)):
                raise ChromosortError(
                    f"{path} holds {item.name!r}, which chromosort did not write; left alone"
                )
        shutil.rmtree(path)
    elif allowed(path.name):
        path.unlink()
    else:
        raise ChromosortError(f"{path} was not written by chromosort; left alone")


def safe_id(text: str, what: str = "name") -> str:
    """``text`` as one safe folder / file name: separators, control and bidirectional characters
    become ``_``, a leading ``.`` becomes ``_``; never empty."""
    cleaned = "".join("_" if ch in "/\\:" or _unsafe_char(ch) else ch for ch in str(text)).strip()
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned[:MAX_NAME_LENGTH]


def _unsafe_char(ch: str) -> bool:
    """Control (C0, DEL, C1) or bidirectional-override characters."""
    code = ord(ch)
    return code < 32 or 127 <= code < 160 or code in _BIDI


def unique_ids(texts) -> tuple[list[str], dict[str, str]]:
    """One distinct safe id per text (:func:`safe_id`); texts whose ids collide (case-blind)
    all get a suffix (``-2``, ``-3``...); returns the ids and {text: id} of those changed."""
    ids = [safe_id(t) for t in texts]
    counts: dict[str, int] = {}
    for i in ids:
        counts[i.lower()] = counts.get(i.lower(), 0) + 1
    out, changed, used = [], {}, set()
    for text, ident in zip(texts, ids, strict=True):
        new, n = ident, 1
        if counts[ident.lower()] > 1 or new.lower() in used:
            n += 1
            new = f"{ident}-{n}"
            while new.lower() in used or new.lower() in counts:
                n += 1
                new = f"{ident}-{n}"
        used.add(new.lower())
        out.append(new)
        if new != str(text):
            changed[str(text)] = new
    return out, changed


MAX_JSON_DEPTH = 32
MAX_JSON_NUMBER_DIGITS = 30


def load_json(text, what: str = "JSON", finite: bool = True):
    """``json.loads`` that refuses, with one ChromosortError line, nesting deeper than
    :data:`MAX_JSON_DEPTH`, numbers of more than :data:`MAX_JSON_NUMBER_DIGITS` digits,
    non-finite numbers (``NaN``, ``1e400``; allowed when not ``finite``, for records whose
    schema checks the numbers that matter) and text that is not JSON."""

    def number(token: str):
        if len(token.lstrip("-")) > MAX_JSON_NUMBER_DIGITS:
            raise ChromosortError(f"{what} has a number of {len(token)} characters")
        value = float(token) if any(c in token for c in ".eE") else int(token)
        if finite and isinstance(value, float) and not math.isfinite(value):
            raise ChromosortError(f"{what} has a number out of range ({token[:20]})")
        return value

    def constant(token: str):
        if finite:
            raise ChromosortError(f"{what} has a non-finite number ({token})")
        return float(token)

    depth = _max_depth(text if isinstance(text, str) else bytes(text).decode("utf-8", "replace"))
    if depth > MAX_JSON_DEPTH:
        raise ChromosortError(
            f"{what} is nested too deeply ({depth} levels; at most {MAX_JSON_DEPTH})"
        )
    try:
        return json.loads(text, parse_float=number, parse_int=number, parse_constant=constant)
    except ChromosortError:
        raise
    except (ValueError, RecursionError) as error:
        raise ChromosortError(f"{what} is not valid JSON ({type(error).__name__})") from None


def _max_depth(text: str) -> int:
    """Deepest bracket nesting of JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR at
    the start) with a leading ``'``; numbers and other cells unchanged."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    if value[0] in "+-":
        try:
            float(value)
            return value  # a number written as text
        except ValueError:
            pass
    return "'" + value
