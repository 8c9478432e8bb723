"""A synthetic spread with an X of two chromosomes crossing, for the segmentation tests."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.synthetic import _render, _segment_mask


def x_spread(half: float = 12.0, polarity: str = "dapi", overlap_gain: float = 2.0):
    """12 single rods and an X of two rods (``half`` px from the centre to each end) crossing;
    the overlap carries ``overlap_gain`` x the stain. Returns (image, one rod's mask, the
    other's)."""
    rng = np.random.default_rng(1)
    shape = (256, 256)
    stain = np.zeros(shape, np.float32)
    for k in range(12):
        y, x = 15 + (k // 4) * 45, 20 + (k % 4) * 60
        stain[_segment_mask(shape, (y, x), (y + 28, x + 6), 4.0)] = 0.45
    dy, dx = half, half * 25 / 30
    a = _segment_mask(shape, (195 - dy, 125 - dx), (195 + dy, 125 + dx), 4.0)
    b = _segment_mask(shape, (195 + dy, 125 - dx), (195 - dy, 125 + dx), 4.0)
    stain[a | b] = 0.45
    stain[a & b] = 0.45 * overlap_gain
    return _render(stain, polarity, rng), a, b
