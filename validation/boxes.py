"""Boxes: reading YOLO files, IoU and one-to-one matching. Used by the tests and the validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BOX_COLUMNS = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]


def read_yolo_boxes(path: Path, shape) -> np.ndarray:
    """YOLO ``class cx cy w h`` (normalised) -> float array (n, 5): cls, y0, x0, y1, x1 in px."""
    h, w = shape[:2]
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        c, cx, cy, bw, bh = (float(v) for v in parts[:5])
        rows.append(
            (int(c), (cy - bh / 2) * h, (cx - bw / 2) * w, (cy + bh / 2) * h, (cx + bw / 2) * w)
        )
    return np.array(rows, float).reshape(-1, 5)


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


def object_boxes(objects: pd.DataFrame) -> np.ndarray:
    """The (n, 4) boxes of an object table."""
    return objects[BOX_COLUMNS].to_numpy(float).reshape(-1, 4)


def match_boxes(truth: np.ndarray, objects: pd.DataFrame) -> list[tuple[int, int]]:
    """(truth row, object row) pairs of truth boxes (n, 5 or n, 4) found by ``objects``."""
    truth = np.asarray(truth, float)
    return greedy_match(box_iou(truth[:, -4:], object_boxes(objects)))
