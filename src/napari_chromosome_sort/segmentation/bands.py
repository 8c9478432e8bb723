"""Chromosomes cut at a dark band: join kept pieces that meet end to end across a bright contact.

A dark band (DAPI, G-banding) or a bend can drop below the tight object threshold and cut one
chromosome into pieces that the growing step then brings back into contact. Two kept pieces are
joined when

* they meet along at least ``join_min_contact`` x the chromatid width: the full width goes on
  across a band, while the rounded ends of two chromosomes touching end to end meet in a neck,
* the contact is bright: its mean is at least ``join_contact_brightness`` x the median stain of
  the dimmer piece (two chromosomes touching end to end meet in a valley, usually darker),
* they are not two pieces of one split (a cut where the outline pinches),
* their union is one unbranched rod (the skeleton does not branch after pruning short spurs)
  at least ``join_min_elongation`` times as long as it is wide (area / widest inscribed
  diameter squared; two short chromosomes side by side, or round ones touching, are not).
"""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.segmentation.params import SegmentationParams
from napari_chromosome_sort.segmentation.shapes import (
    neighbour_pairs,
    pair_sides,
    skeleton_branched,
)


def join_band_cuts(label_img, objects, corrected, width: float, params: SegmentationParams) -> int:
    """Join kept single pieces cut at a dark band, brightest contact first; returns the number
    of joins. Joined pieces keep the lower label; the other one is removed from ``objects``."""
    from scipy import ndimage as ndi

    if not params.join_bands or not objects:
        return 0
    info = {o["label"]: o for o in objects}
    medians: dict[int, float] = {}
    refused: set[tuple[int, int]] = set()
    joins = 0
    while True:
        best = None
        slices = ndi.find_objects(label_img)
        for (a, b), length in _contact_lengths(label_img, info).items():
            if (a, b) in refused or length < params.join_min_contact * width:
                continue
            if info[a].get("split_of") is not None and (
                info[a].get("split_of") == info[b].get("split_of")
            ):
                continue  # cut apart where the outline pinches: two chromosomes
            window = _window(slices, a, b, label_img.shape)
            piece_a, piece_b = label_img[window] == a, label_img[window] == b
            for lab, piece in ((a, piece_a), (b, piece_b)):
                if lab not in medians:
                    medians[lab] = float(np.median(corrected[window][piece]))
            rel = _contact_mean(corrected[window], piece_a, piece_b) / max(
                min(medians[a], medians[b]), 1e-9
            )
            if rel >= params.join_contact_brightness and (best is None or rel > best[0]):
                best = (rel, a, b)
        if best is None:
            return joins
        _, a, b = best
        window = _window(slices, a, b, label_img.shape)
        union = (label_img[window] == a) | (label_img[window] == b)
        if not _one_rod(union, width, params):
            refused.add((a, b))
            continue
        label_img[window][label_img[window] == b] = a
        medians.pop(a, None)
        joined = info.pop(b)
        objects.remove(joined)
        o = info[a]
        o["joined"] = o.get("joined", 1) + joined.get("joined", 1)
        o["reason"] = f"one chromosome, joined from {o['joined']} pieces cut at dark bands"
        joins += 1


def _window(slices, a: int, b: int, shape) -> tuple[slice, slice]:
    """Bounding box of labels a and b (``slices`` from ``ndi.find_objects``), one pixel wider
    (for the contact dilation)."""
    sa, sb = slices[a - 1], slices[b - 1]
    return tuple(
        slice(max(min(u.start, v.start) - 1, 0), min(max(u.stop, v.stop) + 1, n))
        for u, v, n in zip(sa, sb, shape, strict=True)
    )


def _contact_mean(signal, piece_a, piece_b) -> float:
    """Mean signal of the pixels of either piece that touch the other (4-neighbourhood)."""
    from scipy import ndimage as ndi

    contact = (piece_a & ndi.binary_dilation(piece_b)) | (piece_b & ndi.binary_dilation(piece_a))
    return float(signal[contact].mean())


def _one_rod(union, width: float, params: SegmentationParams) -> bool:
    """Unbranched and at least ``join_min_elongation`` times as long as wide."""
    from scipy import ndimage as ndi

    diameter = 2.0 * float(ndi.distance_transform_edt(np.pad(union, 1)).max())
    elongation = float(union.sum()) / max(diameter, 1.0) ** 2
    if elongation < params.join_min_elongation:
        return False
    return not skeleton_branched(union, params.crossing_prune_factor * width)


def _contact_lengths(label_img, info) -> dict[tuple[int, int], int]:
    """(a, b) with a < b, both kept single pieces -> number of 4-neighbour pixel pairs where
    they meet."""
    n_labels = int(label_img.max()) + 1
    joinable = np.zeros(n_labels, bool)
    for lab, o in info.items():
        joinable[lab] = o["status"] == "chromosome" and o["n_parts"] == 1
    lengths: dict[tuple[int, int], int] = {}
    for axis, sel in neighbour_pairs(label_img, joinable):
        a, b = pair_sides(label_img, axis)
        lo, hi = np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])
        ids, counts = np.unique(lo.astype(np.int64) * n_labels + hi, return_counts=True)
        for key, count in zip(ids.tolist(), counts.tolist(), strict=True):
            pair = divmod(key, n_labels)
            lengths[pair] = lengths.get(pair, 0) + count
    return lengths
