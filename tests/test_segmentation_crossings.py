"""Crossings of two chromosomes resolved into two ``crossing-resolved`` objects."""

from __future__ import annotations

import numpy as np
from x_spreads import x_spread

from napari_chromosome_sort.crops import crop_chromosomes
from napari_chromosome_sort.segmentation import STATUSES, SegmentationParams, segment_spread
from napari_chromosome_sort.segmentation.crossings.resolve import RESOLVED, resolve_x
from napari_chromosome_sort.synthetic import _segment_mask


def _iou(x, y) -> float:
    return float((x & y).sum() / max((x | y).sum(), 1))


def test_x_of_two_chromosomes_is_resolved_into_both():
    """Each half's full mask is one of the rods; the crossing pixels are labelled as the first
    and kept in the second's full mask; the reasons name each other; the singles stay kept."""
    image, a, b = x_spread()
    # the resolution alone: the stain flattening dims a lone X twice as bright as the 12 other
    # chromosomes of this small image (on the 72 real DAPI spreads it resolves 20 crossings
    # against 16 without it: docs/validation.md, "Uneven stain")
    seg = segment_spread(image, SegmentationParams(flatten_brightness="off"))
    objects = seg.objects.set_index("label")
    resolved = objects.index[objects["status"] == RESOLVED].tolist()
    assert len(resolved) == 2
    masks = {lab: seg.full_mask(lab) for lab in resolved}
    assert sorted(max(_iou(m, a), _iou(m, b)) for m in masks.values())[0] >= 0.7
    # with the flattening (the default) the X is still resolved into two halves
    flat = segment_spread(image)
    assert (flat.objects["status"] == RESOLVED).sum() == 2
    assert {int(np.argmax([_iou(m, a), _iou(m, b)])) for m in masks.values()} == {0, 1}
    first, second = resolved
    assert second in seg.crossing_masks and first not in seg.crossing_masks
    overlap = a & b
    assert (masks[first] & masks[second] & overlap).sum() >= 0.8 * overlap.sum()
    assert (seg.labels[overlap] == first).mean() >= 0.8
    assert f"other is object {second}" in objects.at[first, "reason"]
    assert f"other is object {first}" in objects.at[second, "reason"]
    assert (objects["status"] == "chromosome").sum() == 12
    assert RESOLVED in STATUSES


def test_resolved_crossings_are_not_cropped_and_can_be_switched_off():
    """Training crops are made of ``chromosome`` objects only; with the resolution off the X is
    set aside as ``cluster`` as before."""
    image, a, b = x_spread()
    seg = segment_spread(image)
    crops = crop_chromosomes(image, seg)
    assert len(crops) == 12
    # (the learned pixel classes, on for fluorescence by default, would cut the cluster too)
    off = segment_spread(image, SegmentationParams(resolve_crossings=False, pixel_classes="off"))
    ids, counts = np.unique(off.labels[a | b], return_counts=True)
    best = int(ids[ids > 0][np.argmax(counts[ids > 0])])
    assert off.objects.set_index("label").at[best, "status"] == "cluster"
    assert not off.crossing_masks


def test_resolve_x_needs_two_straight_chromosomes_crossing():
    """A straight rod, an L (one chromosome bent, or two meeting at a corner) and a V have no
    X to resolve; a T is resolved only when asked for, into the bar and the stem."""
    shape = (80, 80)
    rod = _segment_mask(shape, (40, 10), (40, 70), 4.0)
    ell = rod & (np.arange(80)[None, :] < 42) | _segment_mask(shape, (10, 40), (40, 40), 4.0)
    seg = _segment_mask
    vee = seg(shape, (10, 10), (60, 40), 4.0) | seg(shape, (10, 70), (60, 40), 4.0)
    for mask in (rod, ell, vee):
        assert resolve_x(mask, 8.0, allow_t=True) is None
    bar = _segment_mask(shape, (20, 10), (20, 70), 4.0)
    stem = _segment_mask(shape, (20, 40), (70, 40), 4.0)
    assert resolve_x(bar | stem, 8.0) is None
    found = resolve_x(bar | stem, 8.0, allow_t=True)
    assert found is not None and found.n_arms == 3
    halves = sorted((found.first, found.second), key=lambda h: _iou(h, bar), reverse=True)
    assert _iou(halves[0], bar) >= 0.7 and _iou(halves[1], stem) >= 0.7
    cross = seg(shape, (10, 10), (70, 70), 4.0) | seg(shape, (10, 70), (70, 10), 4.0)
    x = resolve_x(cross, 8.0)
    assert x is not None and x.n_arms == 4 and x.bend_deg < 15
