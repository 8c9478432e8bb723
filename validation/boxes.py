"""Boxes of the annotated spreads with their classes, and matching to object tables.

IoU and one-to-one matching are the product's own (``segmentation.truth``): the tests, the
validation and ``chromosort segment-learn`` match boxes the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.truth import (
    BOX_COLUMNS,
    box_iou,
    greedy_match,
    read_yolo,
    read_yolo_classes,
)

__all__ = ["BOX_COLUMNS", "box_areas", "box_iou", "greedy_match", "match_boxes", "object_boxes"]


def read_yolo_boxes(path: Path, shape) -> np.ndarray:
    """YOLO ``class cx cy w h`` (normalised) -> float array (n, 5): cls, y0, x0, y1, x1 in px."""
    classes = read_yolo_classes(path).astype(float).reshape(-1, 1)
    return np.hstack([classes, read_yolo(path, shape)])


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of boxes whose last four columns are y0, x0, y1, x1."""
    b = np.asarray(boxes, float).reshape(len(boxes), -1)[:, -4:]
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def object_boxes(objects: pd.DataFrame) -> np.ndarray:
    """The (n, 4) boxes of an object table."""
    return objects[BOX_COLUMNS].to_numpy(float).reshape(-1, 4)


def match_boxes(truth: np.ndarray, objects: pd.DataFrame) -> list[tuple[int, int]]:
    """(truth row, object row) pairs of truth boxes (n, 5 or n, 4) found by ``objects``."""
    truth = np.asarray(truth, float)
    return greedy_match(box_iou(truth[:, -4:], object_boxes(objects)))
