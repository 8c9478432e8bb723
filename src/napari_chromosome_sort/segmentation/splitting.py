"""Watershed splitting of a too-large object into chromosome-shaped pieces."""

from __future__ import annotations

import numpy as np

from .shapes import shape_props


def split_by_levels(local, signal, med_obj, params, width=None):
    """Split a too-large blob by raising the threshold inside it until it falls apart into
    seeds, then growing the seeds back (watershed on intensity). The level giving the most
    chromosome-shaped pieces wins. Returns ``(piece_labels, good_flags)`` or None when no level
    gives any chromosome-shaped piece."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    signals = [signal]
    if width:  # also try with narrow necks (where touching chromosomes meet) counted as dim
        dist = ndi.distance_transform_edt(np.pad(local, 1))[1:-1, 1:-1]
        signals.append(signal * np.clip(dist / (0.5 * width), 0.0, 1.0))
    if local.sum() < 4:
        return None
    min_piece = params.split_min_piece_factor * med_obj
    max_piece = params.split_max_piece_factor * med_obj
    best = None
    for height in signals:
        values = height[local]
        for q in np.linspace(0.1, 0.9, 17):
            level = np.quantile(values, q)
            seeds, n = ndi.label((height > level) & local)
            if n < 2:
                continue
            sizes = np.bincount(seeds.ravel())
            big_seeds = np.flatnonzero(sizes >= params.split_seed_factor * med_obj)
            big_seeds = big_seeds[big_seeds > 0]
            if big_seeds.size < 2:
                continue
            markers = np.zeros(local.shape, np.int32)
            for k, sid in enumerate(big_seeds, 1):
                markers[seeds == sid] = k
            ws = watershed(-height, markers, mask=local)
            good = []
            for k in range(1, len(big_seeds) + 1):
                piece = ws == k
                area = int(piece.sum())
                ok = min_piece <= area <= max_piece and (
                    shape_props(piece)["solidity"] >= params.split_min_solidity
                )
                good.append(ok)
            good = np.array(good, bool)
            key = (int(good.sum()), float(np.mean(good)))
            if not params.split_partial and not good.all():
                continue
            if good.any() and (best is None or key > best[0]):
                best = (key, ws, good)
    if best is None:
        return None
    return best[1], best[2]
