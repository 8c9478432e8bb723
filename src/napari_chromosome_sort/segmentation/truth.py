"""Truth boxes of annotated spreads, from the files other tools write, and box matching.

Three kinds of ``--truth PATH`` are read, each giving the chromosome boxes of one image as an
``(n, 4)`` float array ``y0, x0, y1, x1`` in pixels:

- a folder of YOLO ``.txt`` files named like the images (``class cx cy w h``, normalised; what
  LabelImg, Roboflow and CVAT export), also looked up in its ``labels/`` sub-folder;
- a COCO JSON file (``images`` + ``annotations`` with ``bbox = [x, y, w, h]``); annotations of a
  category named ``nucleus``, ``debris``, ``cluster``, ``border`` or ``background`` are not
  chromosomes;
- the output folder of ``chromosort segment`` (one ``<image stem>/objects.csv`` each, with
  ``labels.tif`` beside it), corrected by the user: the objects with status ``chromosome``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.errors import ChromosortError

BOX_COLUMNS = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
NOT_CHROMOSOME = {"nucleus", "debris", "cluster", "border", "background"}


def box_iou(a, b) -> np.ndarray:
    """IoU matrix between boxes ``a`` (n, 4) and ``b`` (m, 4), each y0, x0, y1, x1."""
    a = np.asarray(a, float).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, float).reshape(-1, 4)[None, :, :]
    iy = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ix = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iy * ix
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def greedy_match(iou: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs, best IoU first, each at least ``threshold``."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape))[0]
    used_a: set[int] = set()
    used_b: set[int] = set()
    for i, j in order:
        if iou[i, j] < threshold:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(int(i))
        used_b.add(int(j))
        pairs.append((int(i), int(j)))
    return pairs


def matched_objects(truth: np.ndarray, objects: pd.DataFrame, threshold: float = 0.5) -> np.ndarray:
    """Per row of ``objects``: does its box match a truth box one-to-one at IoU >= threshold?"""
    hit = np.zeros(len(objects), bool)
    if len(objects) and len(truth):
        boxes = objects[BOX_COLUMNS].to_numpy(float)
        for _, j in greedy_match(box_iou(truth, boxes), threshold):
            hit[j] = True
    return hit


def _yolo_rows(path: Path, read) -> list:
    """``read(fields)`` of every non-empty line of a YOLO file; a line ``read`` cannot read
    (ValueError) stops with its number."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            rows.append(read(parts))
        except ValueError:
            raise ChromosortError(f"{path}: line {number} is not 'class cx cy w h'") from None
    return rows


def read_yolo(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Boxes of a YOLO ``class cx cy w h`` file (normalised) for an image of ``shape``."""
    h, w = shape[:2]

    def box(parts: list[str]) -> tuple[float, float, float, float]:
        """``y0, x0, y1, x1`` in pixels of one line's normalised ``cx cy w h``."""
        cx, cy, bw, bh = (float(v) for v in parts[1:5])
        return (cy - bh / 2) * h, (cx - bw / 2) * w, (cy + bh / 2) * h, (cx + bw / 2) * w

    return np.array(_yolo_rows(path, box), float).reshape(-1, 4)


def read_yolo_classes(path: Path) -> np.ndarray:
    """The class index of every box of a YOLO file, in the order of :func:`read_yolo`."""
    return np.array(_yolo_rows(path, lambda parts: int(float(parts[0]))), int)


def _coco_boxes(data: dict, image_name: str) -> np.ndarray:
    try:
        images = {Path(im["file_name"]).name: im["id"] for im in data["images"]}
        stems = {Path(name).stem: i for name, i in images.items()}
        skip = {c["id"] for c in data.get("categories", []) if c.get("name") in NOT_CHROMOSOME}
        image_id = images.get(Path(image_name).name, stems.get(Path(image_name).stem))
        if image_id is None:
            raise ChromosortError(f"the COCO file has no image named {image_name}")
        boxes = [
            a["bbox"]
            for a in data["annotations"]
            if a["image_id"] == image_id and a.get("category_id") not in skip
        ]
        rows = [
            (float(y), float(x), float(y) + float(h), float(x) + float(w)) for x, y, w, h in boxes
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ChromosortError(f"not a COCO annotation file (missing or bad {exc})") from None
    return np.array(rows, float).reshape(-1, 4)


def _segment_folder_boxes(folder: Path) -> np.ndarray:
    """The boxes of the ``chromosome`` objects of a ``chromosort segment`` output folder (from
    ``labels.tif`` when it is there: hand-painted labels may have moved)."""
    try:
        objects = pd.read_csv(folder / "objects.csv")
    except (ValueError, pd.errors.ParserError) as exc:
        raise ChromosortError(f"{folder / 'objects.csv'} is not an objects table: {exc}") from None
    labels = None
    if (folder / "labels.tif").is_file():
        import tifffile

        labels = np.asarray(tifffile.imread(folder / "labels.tif"))
    try:
        return reviewed_boxes(objects, labels)
    except (KeyError, ValueError) as exc:
        raise ChromosortError(f"{folder / 'objects.csv'} is not an objects table: {exc}") from None


def reviewed_boxes(objects: pd.DataFrame, labels: np.ndarray | None = None) -> np.ndarray:
    """The truth boxes of a reviewed segmentation: those of its objects with status
    ``chromosome``, measured on the label image ``labels`` when given (hand-painted labels may
    have moved), else read from the table's box columns."""
    chromosomes = objects["status"] == "chromosome"
    if labels is None:
        return objects.loc[chromosomes, BOX_COLUMNS].to_numpy(float)
    from scipy import ndimage as ndi

    ids = objects.loc[chromosomes, "label"].astype(int).to_numpy()
    slices = ndi.find_objects(np.asarray(labels).astype(np.int64))
    rows = []
    for i in ids:
        sl = slices[i - 1] if 0 < i <= len(slices) else None
        if sl is not None:
            rows.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
    return np.array(rows, float).reshape(-1, 4)


def read_truth(truth: str | Path, image_path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """The truth chromosome boxes of one image (see the module docstring for ``truth``)."""
    truth, image_path = Path(truth), Path(image_path)
    stem = image_path.stem
    if truth.is_file() and truth.suffix.lower() == ".json":
        try:
            data = json.loads(truth.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChromosortError(f"cannot read COCO file {truth}: {exc}") from None
        return _coco_boxes(data, image_path.name)
    if not truth.is_dir():
        raise ChromosortError(f"truth must be a folder or a COCO .json file, got {truth}")
    if (truth / stem / "objects.csv").is_file():
        return _segment_folder_boxes(truth / stem)
    for candidate in (truth / f"{stem}.txt", truth / "labels" / f"{stem}.txt"):
        if candidate.is_file():
            return read_yolo(candidate, shape)
    raise ChromosortError(
        f"no truth for {image_path.name} in {truth}: expected {stem}.txt (YOLO) or "
        f"{stem}/objects.csv (a chromosort segment folder)"
    )
