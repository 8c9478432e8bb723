"""The colours of classes: the same in napari layers, legends, plots and overlay pictures."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib.colors import to_rgb

CLASS_PALETTE = [
    "#ff4444",
    "#44aaff",
    "#ffdd33",
    "#44dd88",
    "#dd66ff",
    "#ff9933",
    "#33dddd",
    "#ff66aa",
    "#aaaaaa",
]


def class_colours(classes: Iterable[str]) -> dict[str, str]:
    """One colour per class, in the order of ``classes``."""
    return {c: CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, c in enumerate(classes)}


def class_rgb(classes: Iterable[str]) -> dict[str, np.ndarray]:
    """The same colours as uint8 RGB triples."""
    return {
        c: np.round(np.array(to_rgb(colour)) * 255).astype(np.uint8)
        for c, colour in class_colours(classes).items()
    }
