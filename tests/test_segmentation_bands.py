"""Banded chromosomes: a cut only where the outline pinches, never across a dark band."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread
from napari_chromosome_sort.synthetic import _render, _segment_mask


def _banded(shape, p0, p1, radius, period, dark_fraction, depth):
    """(stain, mask) of a rod from p0 to p1 whose stain drops to ``depth`` x across bands of
    ``dark_fraction`` of every ``period`` px along its axis."""
    mask = _segment_mask(shape, p0, p1, radius)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    d = np.subtract(p1, p0, dtype=np.float32)
    t = ((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / float(np.hypot(*d))
    band = (t % period) < dark_fraction * period
    return np.where(mask, np.where(band, depth, 1.0), 0.0).astype(np.float32), mask


def _spread(modality: str, depth: float):
    """Twelve banded rods of several lengths and angles, plus two banded rods meeting end to
    end at a pinched neck (a corner); returns (image, rod masks, the two pinched masks)."""
    rng = np.random.default_rng(3)
    shape = (300, 300)
    stain = np.zeros(shape, np.float32)
    rods = []
    for k in range(12):
        y, x = 30 + (k // 4) * 70, 30 + (k % 4) * 65
        length = 22 + 4 * (k % 5)
        angle = 0.4 * k
        p1 = (y + length * np.cos(angle), x + length * np.sin(angle) * 0.6)
        s, m = _banded(shape, (y, x), p1, 4.5, 9.0, 0.35, depth)
        stain = np.maximum(stain, s)
        rods.append(m)
    pinched = []
    for p0, p1 in (((250, 40), (250, 70)), ((215, 80), (243, 77))):
        s, m = _banded(shape, p0, p1, 4.5, 9.0, 0.35, depth)
        stain = np.maximum(stain, s)
        pinched.append(m)
    return _render(0.85 * stain if modality == "giemsa" else 0.45 * stain, modality, rng), (
        rods,
        pinched,
    )


def _objects_over(seg, mask):
    """Labels of the objects holding at least 10 % of ``mask``."""
    ids, counts = np.unique(seg.labels[mask], return_counts=True)
    return {int(i) for i, c in zip(ids, counts, strict=True) if i > 0 and c >= 0.1 * mask.sum()}


@pytest.mark.parametrize("modality", ["dapi", "giemsa"])
@pytest.mark.parametrize("depth", [0.6, 0.45])
def test_banded_rods_are_never_cut_at_a_band(modality, depth):
    """Every convex banded rod is one kept chromosome, its bands down to 0.45 x the rod's stain;
    two banded rods meeting at a pinch are cut there into two chromosomes by the neck split of
    the outline (``split_by_outline``, off by default). Bands deep enough to cut every
    chromosome's stain at the object threshold are not joined again (docs/validation.md)."""
    image, (rods, pinched) = _spread(modality, depth)
    seg = segment_spread(image, SegmentationParams(split_by_outline=True))
    status = dict(zip(seg.objects["label"], seg.objects["status"], strict=True))
    for rod in rods:
        (label,) = _objects_over(seg, rod)
        assert status[label] == "chromosome"
        mask = seg.labels == label
        assert (mask & rod).sum() / (mask | rod).sum() >= 0.6
    first, second = (_objects_over(seg, m) for m in pinched)
    assert len(first) == 1 and len(second) == 1 and first != second
    assert all(status[label] == "chromosome" for label in first | second)


def test_only_the_outline_finds_the_pinch_of_banded_rods():
    """The check above is not vacuous: the bands are deep (the stain along each rod drops below
    0.7 x its maximum at every band), and a neck split that follows the stain alone
    (``split_by_outline`` off, the default) keeps the pinched banded pair as one object; the
    banded rods stay whole either way."""
    image, (rods, pinched) = _spread("dapi", 0.45)
    seg = segment_spread(image, SegmentationParams(split_by_outline=True))
    for rod in rods:
        values = seg.signal[rod]
        assert np.quantile(values, 0.1) < 0.7 * values.max()
    stain_only = segment_spread(image, SegmentationParams(split_by_outline=False))
    assert _objects_over(stain_only, pinched[0]) == _objects_over(stain_only, pinched[1])
    assert all(len(_objects_over(stain_only, rod)) == 1 for rod in rods)
