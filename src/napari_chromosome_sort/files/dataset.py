"""Labelled-crop store: one folder per class (ImageFolder / Create ML convention) + manifest.csv.

Every write is atomic (temporary file in the same folder, then ``os.replace``), so a crash never
leaves a half-written image or manifest. Relabelling moves the file between class folders and
rewrites the manifest row; nothing is lost. Every path in ``manifest.csv`` must lead to a file
inside the dataset folder: a manifest that points elsewhere is refused, never followed.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.crops import crop_png_bytes
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic
from napari_chromosome_sort.files.io import IMAGE_SUFFIXES
from napari_chromosome_sort.files.safety import (
    check_name,
    check_relative,
    inside,
    is_link,
    no_links,
    unique_in,
)

MANIFEST = "manifest.csv"
COLUMNS = [
    "file",
    "class",
    "source",
    "label",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "labelled_at",
]


def sanitise_class_name(name: str) -> str:
    """A free-text class name -> a safe folder name (letters, digits, ``-_.`` and spaces kept)."""
    text = str(name).strip()
    safe = re.sub(r"[^\w\-. ]+", "_", text).strip(" .")
    if not safe.strip("_"):
        raise ChromosortError(f"class name {name!r} is empty after removing unsafe characters")
    return check_name(safe)


class CropDataset:
    """Folder-per-class crop store rooted at ``root`` (created when missing)."""

    def __init__(self, root, classes=("A", "B", "C")):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ChromosortError(f"cannot create dataset folder {self.root}: {error}") from None
        self._classes: list[str] = []
        given = {}
        for cls in classes:  # two names for one folder would merge two classes silently
            folder = sanitise_class_name(cls)
            if folder in given and given[folder] != cls:
                raise ChromosortError(
                    f"class names {given[folder]!r} and {cls!r} would share the folder {folder!r}"
                )
            given[folder] = cls
        manifest = self.manifest()
        for cls in list(classes) + manifest["class"].astype(str).tolist() + self._folders():
            self._ensure_class(cls)

    # ------------------------------------------------------------------ classes
    def _folders(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def _ensure_class(self, cls: str, create: bool = False) -> str:
        """Register a class; its folder is made only when a crop goes in (``create``), so a
        class nobody labelled yet is no empty folder that training would trip over."""
        folder = sanitise_class_name(cls)
        if folder not in self._classes:
            self._classes.append(folder)
        if create:
            no_links(self.root, self.root / folder, "class folder").mkdir(exist_ok=True)
        return folder

    @property
    def classes(self) -> list[str]:
        """Class folder names, in the order they were registered."""
        return list(self._classes)

    def add_class(self, cls: str) -> str:
        """Add a (free-text) class; returns its folder name."""
        return self._ensure_class(cls)

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        """The dataset's manifest CSV."""
        return self.root / MANIFEST

    def manifest(self) -> pd.DataFrame:
        """The manifest table, one row per crop (empty when there is none yet)."""
        if not self.manifest_path.exists():
            return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        try:
            table = pd.read_csv(
                self.manifest_path,
                dtype={"file": str, "class": str, "source": str, "labelled_at": str},
            )
        except Exception as error:
            raise ChromosortError(f"cannot read {self.manifest_path}: {error}") from None
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ChromosortError(f"{self.manifest_path} lacks columns {', '.join(missing)}")
        table["source"] = table["source"].fillna("")
        self._check_files(table)
        return table[COLUMNS]

    def _check_files(self, table: pd.DataFrame) -> None:
        """Refuse a manifest whose ``file`` column names a path outside the dataset folder."""
        for row, file in enumerate(table["file"], start=2):  # line 1 is the header
            try:
                if len(check_relative(file, "file").parts) != 2:
                    raise ChromosortError(f"file {str(file)[:60]!r} is not <class>/<crop file>")
            except ChromosortError as error:
                raise ChromosortError(
                    f"{self.manifest_path} line {row} is refused: {error}"
                ) from None

    def _write_manifest(self, table: pd.DataFrame) -> None:
        write_bytes_atomic(self.manifest_path, table[COLUMNS].to_csv(index=False).encode())

    def items(self) -> list[tuple[Path, str]]:
        """(absolute path, class) for every manifest row."""
        table = self.manifest()
        return [(self.root / f, c) for f, c in zip(table["file"], table["class"], strict=True)]

    def counts(self) -> dict[str, int]:
        """Number of crops of each class."""
        table = self.manifest()
        return {c: int((table["class"] == c).sum()) for c in self._classes}

    # ------------------------------------------------------------------ edits
    def add(
        self, pixels, cls: str, source: str = "", label: int = 0, bbox=None, polarity=None
    ) -> Path:
        """Store one crop as PNG in the class folder; returns its path. ``polarity``: the
        spread's (:attr:`.Crop.polarity`), kept in the file for training to record."""
        bbox = [None] * 4 if bbox is None else [int(v) for v in bbox]
        if len(bbox) != 4:
            raise ChromosortError(f"bbox must be (y0, x0, y1, x1), got {bbox}")
        folder = self._ensure_class(cls, create=True)
        stem = re.sub(r"[^\w\-.]+", "_", Path(str(source)).stem) or "crop"
        stamp = datetime.now(timezone.utc)
        name = f"{stem}_l{int(label)}_{stamp.strftime('%Y%m%dT%H%M%S%f')}.png"
        path = self.root / folder / name
        n = 1
        while path.exists():
            path = self.root / folder / f"{Path(name).stem}_{n}.png"
            n += 1
        values = [
            f"{folder}/{path.name}",
            folder,
            str(source),
            int(label),
            *bbox,
            stamp.isoformat(timespec="seconds"),
        ]
        row = dict(zip(COLUMNS, values, strict=True))
        write_bytes_atomic(path, crop_png_bytes(pixels, polarity))
        table = self.manifest()
        table = (
            pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            if len(table)
            else pd.DataFrame([row], columns=COLUMNS)
        )
        try:
            self._write_manifest(table)
        except BaseException:
            path.unlink(missing_ok=True)  # no orphan image without a manifest row
            raise
        return path

    def _row(self, file) -> tuple[pd.DataFrame, int]:
        table = self.manifest()
        path = Path(file)
        rel = path.as_posix()
        if path.is_absolute():
            try:
                rel = path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                raise ChromosortError(f"{file} is not inside the dataset {self.root}") from None
        hits = np.flatnonzero(table["file"].to_numpy() == rel)
        if len(hits) == 0:
            hits = np.flatnonzero(table["file"].map(lambda f: Path(f).name).to_numpy() == path.name)
        if len(hits) != 1:
            raise ChromosortError(f"{file} is not (uniquely) in {self.manifest_path}")
        return table, int(hits[0])

    def _stored(self, file: str) -> Path:
        """The crop file a manifest row names, refused unless it lies inside the dataset, in a
        class folder that is no link, and is no folder."""
        what = f"manifest file entry of {self.manifest_path}"
        path = inside(self.root, file, what)
        no_links(self.root, path.parent, what)
        if path.is_dir() or is_link(path) or path.name == MANIFEST:
            raise ChromosortError(f"{what} {str(file)[:60]!r} is not a crop file")
        return path

    def relabel(self, file, cls: str) -> Path:
        """Move a stored crop to class ``cls`` (file moved, manifest updated); returns new path."""
        table, i = self._row(file)
        folder = self._ensure_class(cls, create=True)
        old = self._stored(table.at[i, "file"])
        new = self.root / folder / old.name
        if new == old:
            return old
        if not old.exists():
            raise ChromosortError(f"crop file {old} is missing")
        new = unique_in(self.root / folder, old.name)  # never onto another crop
        os.replace(old, new)
        table.at[i, "file"] = f"{folder}/{new.name}"
        table.at[i, "class"] = folder
        table.at[i, "labelled_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self._write_manifest(table)
        except BaseException:
            os.replace(new, old)  # keep file and manifest consistent
            raise
        return new

    def remove(self, file) -> None:
        """Delete a stored crop and its manifest row."""
        table, i = self._row(file)
        path = self._stored(table.at[i, "file"])
        self._write_manifest(table.drop(index=i).reset_index(drop=True))
        if path.exists():
            path.unlink()


def scan_image_folder(root, skip_empty: bool = False) -> tuple[list[Path], np.ndarray, list[str]]:
    """Images of a folder-per-class set (ImageFolder convention: classes = sorted sub-folders).

    Raises ChromosortError when the folder is unreadable, has fewer than 2 classes with images
    or (unless ``skip_empty``: then it is no class) a class folder without images."""
    root = Path(root)
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as error:
        raise ChromosortError(f"cannot read image folder {root}: {error}") from None
    if len(folders) < 2:
        raise ChromosortError(
            f"{root} needs at least 2 class sub-folders (one per class), found {len(folders)}"
        )
    paths: list[Path] = []
    targets: list[int] = []
    classes: list[str] = []
    for folder in folders:
        try:
            files = sorted(
                p
                for p in folder.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
        except OSError as error:
            raise ChromosortError(f"cannot read class folder {folder}: {error}") from None
        if not files and skip_empty:
            continue
        if not files:
            raise ChromosortError(f"class folder {folder} has no images")
        paths.extend(files)
        targets.extend([len(classes)] * len(files))
        classes.append(folder.name)
    if len(classes) < 2:
        raise ChromosortError(
            f"{root} needs crops in at least 2 classes, found crops in {len(classes)}"
            f" ({', '.join(classes) or 'none'})"
        )
    return paths, np.asarray(targets, dtype=int), classes
