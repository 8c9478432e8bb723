"""Pictures a person can open: a spread with each called chromosome outlined in its class colour."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from napari_chromosome_sort.crops import as_rgb_uint8
from napari_chromosome_sort.display.colours import class_rgb

OTHER_RGB = np.array([150, 150, 150], dtype=np.uint8)  # objects without a call


def calls_overlay(
    image: np.ndarray, labels: np.ndarray, calls: pd.DataFrame, classes: Sequence[str]
) -> np.ndarray:
    """``image`` as RGB with every object's outline drawn: in its class colour where ``calls``
    (columns ``label``, ``class``) calls it, grey otherwise."""
    picture = as_rgb_uint8(image).copy()
    labels = np.asarray(labels)
    edges = find_boundaries(labels, mode="inner")
    picture[edges] = OTHER_RGB
    colours = class_rgb([str(c) for c in classes])
    lookup = np.zeros((int(labels.max()) + 1, 3), dtype=np.uint8)
    called = np.zeros(int(labels.max()) + 1, dtype=bool)
    for label, cls in zip(calls["label"], calls["class"], strict=True):
        if pd.notna(cls) and str(cls) in colours and 0 < int(label) < len(lookup):
            lookup[int(label)] = colours[str(cls)]
            called[int(label)] = True
    mark = edges & called[labels]
    picture[mark] = lookup[labels[mark]]
    return picture
