"""Readers: a labelled crop dataset folder (``manifest.csv`` + one sub-folder per class), and
the saved work on a spread (a ``.chromosort`` folder, :mod:`.files.work`, or its
``work.json``).

A dataset opens as one image stack (slider = crop) whose ``metadata['manifest']`` holds the
manifest table, so a user can page through what has been labelled. A work folder opens as the
spread, its reviewed objects and its predicted classes, as they were saved.

napari offers every reader that accepts folders for any folder, so File > Open Folder on a
``.chromosort`` folder asks which reader to use (napari's own reader stops on ``work.json``
with one error: it finds no image there). Opening the folder's ``work.json`` is unambiguous:
only this plugin reads ``.json`` files named so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.io import read_image
from napari_chromosome_sort.files.safety import inside, no_links
from napari_chromosome_sort.files.work import INDEX, is_work_folder, read_work

MANIFEST = "manifest.csv"


def _manifest_path(path) -> Path | None:
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        return path / MANIFEST
    if path.name == MANIFEST and path.is_file():
        return path
    return None


def _work_folder(path) -> Path | None:
    """The work folder ``path`` names (the folder or its ``work.json``), or None."""
    single = path[0] if isinstance(path, list) and len(path) == 1 else path
    if not isinstance(single, (str, Path)):
        return None
    single = Path(single)
    if single.name == INDEX:
        single = single.parent
    return single if is_work_folder(single) else None


def get_reader(path):
    """npe2 reader hook: a reader for a dataset folder / its manifest or a work folder / its
    ``work.json``, else None (other files are left to napari's own readers)."""
    if _manifest_path(path) is not None:
        return read_dataset
    if _work_folder(path) is not None:
        return read_work_folder
    return None


def read_work_folder(path):
    """The layers of a saved work folder (see :mod:`.files.work`)."""
    return read_work(_work_folder(path) or path)


def read_dataset(path):
    """The crops listed in a dataset's manifest as one RGB image stack (padded to the largest crop,
    missing files skipped), the manifest table in the layer metadata."""
    import pandas as pd

    manifest_path = _manifest_path(path)
    root = manifest_path.parent
    manifest = pd.read_csv(manifest_path)
    crops, rows = [], []
    for _, row in manifest.iterrows():
        try:  # a row naming "/abs" or "../x" is never read
            file = no_links(root, inside(root, str(row["file"]), "manifest file entry"))
        except ChromosortError:
            continue
        if not file.is_file():
            continue
        pixels = np.asarray(read_image(file))
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        crops.append(pixels[..., :3])
        rows.append(row)
    if not crops:
        return [(np.zeros((1, 8, 8, 3), np.uint8), {"name": f"{root.name} (empty)"}, "image")]
    height = max(c.shape[0] for c in crops)
    width = max(c.shape[1] for c in crops)
    stack = np.zeros((len(crops), height, width, 3), dtype=crops[0].dtype)
    for i, crop in enumerate(crops):
        stack[i, : crop.shape[0], : crop.shape[1]] = crop
    table = pd.DataFrame(rows).reset_index(drop=True)
    meta = {"name": f"{root.name} crops", "rgb": True, "metadata": {"manifest": table}}
    return [(stack, meta, "image")]
