"""The work on a spread saved as one folder and opened again: the spread image, its reviewed
objects (labels, statuses, edits) and its predicted classes, each as napari layer data.

A work folder (``<name>.chromosort/``) holds ``work.json`` (the layers, in order, with their
names, placement and the plugin's metadata) and, in ``layers/``, one ``layer_<i>.tif`` per layer
and, for a Labels layer with a per-object table, ``layer_<i>.csv``. Only ``work.json`` lies at
the top, so napari's own folder reader (which stacks every file it finds there) stops on it
with one error instead of stacking the layers. File names are numbered, never taken from
layer names, and ``work.json`` is checked before anything is read, so a folder from a
collaborator cannot point outside itself (folders saved with the layer files at the top open
as well). Qt-free: the functions take and return napari layer
data tuples ``(data, attributes, kind)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import atomic_path, write_bytes_atomic, write_csv_atomic
from napari_chromosome_sort.files.io import MAX_PIXELS, check_pixel_count
from napari_chromosome_sort.files.safety import inside, load_json, no_links

FORMAT = "napari-chromosome-sort work/1"
SUFFIX = ".chromosort"
INDEX = "work.json"
LAYER_DIR = "layers"
KINDS = ("image", "labels")
PLACEMENT = ("scale", "translate")


def is_work_folder(path) -> bool:
    """Does ``path`` name a saved work folder?"""
    path = Path(path)
    return path.suffix == SUFFIX and (path / INDEX).is_file()


def _json_safe(value):
    """``value`` if JSON can hold it as it is (the plugin's metadata is plain data), else None."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def save_work(folder, layers: list[tuple]) -> list[str]:
    """Write image and Labels layer data tuples to the work folder ``folder`` (``.chromosort``
    added when missing); returns the paths written. Other layer kinds are refused."""
    import tifffile

    folder = Path(folder)
    if folder.suffix != SUFFIX:
        folder = folder.with_name(folder.name + SUFFIX)
    entries = []
    kinds = [kind for _data, _attrs, kind in layers]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ChromosortError(
            f"a work folder holds image and labels layers only, not {', '.join(unknown)}"
        )
    if "labels" not in kinds:
        raise ChromosortError("select the spread's objects or predicted-classes layer to save")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (data, attrs, kind) in enumerate(layers):
        array = np.asarray(data)
        entry = {
            "kind": kind,
            "name": str(attrs.get("name", f"layer {i}")),
            "file": f"{LAYER_DIR}/layer_{i}.tif",
            "metadata": _json_safe(dict(attrs.get("metadata") or {}).get("chromosort")) or {},
        }
        for key in PLACEMENT:
            if attrs.get(key) is not None:
                entry[key] = [float(v) for v in np.asarray(attrs[key]).ravel()]
        if kind == "image":
            entry["rgb"] = bool(attrs.get("rgb", array.ndim == 3 and array.shape[-1] in (3, 4)))
        with atomic_path(no_links(folder, folder / entry["file"], "layer file")) as tmp:
            tifffile.imwrite(tmp, array, compression="zlib")
        written.append(str(folder / entry["file"]))
        features = attrs.get("features")
        if kind == "labels" and features is not None and len(features):
            entry["table"] = f"{LAYER_DIR}/layer_{i}.csv"
            table = pd.DataFrame(features).drop(columns=["index"], errors="ignore")
            target = no_links(folder, folder / entry["table"], "object table")
            written.append(str(write_csv_atomic(table, target)))
        entries.append(entry)
    index = {"format": FORMAT, "layers": entries}
    write_bytes_atomic(folder / INDEX, json.dumps(index, indent=1).encode())
    return [*written, str(folder / INDEX)]


def _index(folder: Path) -> list[dict]:
    try:
        if (folder / INDEX).stat().st_size > 16 * 2**20:
            raise ChromosortError(f"{folder / INDEX} is larger than 16 MB")
        index = load_json((folder / INDEX).read_bytes(), str(folder / INDEX))
    except (OSError, ValueError) as error:
        raise ChromosortError(f"{folder / INDEX} cannot be read: {error}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ChromosortError(
            f"{folder / INDEX} is not a napari-chromosome-sort work index ({FORMAT})"
        )
    entries = index.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ChromosortError(f"{folder / INDEX} lists no layers")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            raise ChromosortError(f"{folder / INDEX}: a layer entry of unknown kind: {entry!r:.80}")
    return entries


def read_work(folder) -> list[tuple]:
    """The layer data tuples of a work folder, in the order they were saved: the objects and
    predicted-classes layers keep their per-object tables (``features``) and the plugin's
    metadata, so the widgets recognise them again."""
    import tifffile

    folder = Path(folder)
    layers = []
    for entry in _index(folder):
        file = inside(folder, entry.get("file"), "layer file")
        try:
            with tifffile.TiffFile(file) as tif:  # the size is checked before decoding
                shape = tuple(tif.series[0].shape)
                plane = shape[-3:-1] if len(shape) > 2 and shape[-1] <= 4 else shape[-2:]
                check_pixel_count(plane, f"layer {file.name}")
                if int(np.prod(shape)) > 4 * MAX_PIXELS:
                    raise ChromosortError(f"layer {file.name} holds {shape} values; too many")
                data = tif.asarray()
        except ChromosortError:
            raise
        except Exception as error:  # noqa: BLE001 - any unreadable file is the user's problem
            raise ChromosortError(f"{file} cannot be read: {error}") from None
        attrs = {"name": str(entry.get("name", file.stem))}
        metadata = entry.get("metadata")
        if isinstance(metadata, dict) and metadata:
            attrs["metadata"] = {"chromosort": metadata}
        for key in PLACEMENT:
            if isinstance(entry.get(key), list):
                attrs[key] = [float(v) for v in entry[key]]
        if entry["kind"] == "image":
            attrs["rgb"] = bool(entry.get("rgb", False))
        else:
            data = np.asarray(data, dtype=np.int32)
            if entry.get("table"):
                table_file = inside(folder, entry["table"], "object table")
                try:
                    attrs["features"] = pd.read_csv(table_file)
                except Exception as error:  # noqa: BLE001
                    raise ChromosortError(f"{table_file} cannot be read: {error}") from None
        layers.append((data, attrs, entry["kind"]))
    return layers
