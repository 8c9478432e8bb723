"""Watershed splitting of a too-large object into chromosome-shaped pieces."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_chromosome_sort.segmentation.pairing import group_pairs
from napari_chromosome_sort.segmentation.shapes import solidity


def split_by_levels(local, signal, med_obj, params, width=None, accept=None, by_shape=False):
    """Split a too-large blob by raising the threshold inside it until it falls apart into
    seeds, then growing the seeds back (watershed on intensity). The level giving the most
    chromosome-shaped pieces wins; ``accept(piece_labels, n_pieces)``, when given, must also
    hold. With ``by_shape`` the levels of the distance to the outline are tried too: the
    outline alone, blind to dark bands (a banded chromosome's stain falls apart at every band,
    its outline only where it pinches). Returns ``(piece_labels, good_flags)`` or None when no
    level gives any chromosome-shaped piece."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    signals = [signal]
    if width:  # also try with narrow necks (where touching chromosomes meet) counted as dim
        dist = ndi.distance_transform_edt(np.pad(local, 1))[1:-1, 1:-1]
        signals.append(signal * np.clip(dist / (0.5 * width), 0.0, 1.0))
        if by_shape:
            signals.append(dist)
    if local.sum() < 4:
        return None
    min_piece = params.split_min_piece_factor * med_obj
    max_piece = params.split_max_piece_factor * med_obj
    best = None
    seen = set()  # partitions already judged (several levels often give the same one)
    for height in signals:
        for level in np.quantile(height[local], np.linspace(0.1, 0.9, 17)):
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
            partition = ws.tobytes()
            if partition in seen:
                continue  # same pieces, same verdict: it cannot beat itself
            seen.add(partition)
            areas = np.bincount(ws.ravel(), minlength=len(big_seeds) + 1)[1:]
            good = (areas >= min_piece) & (areas <= max_piece)
            if not params.split_partial and not good.all():
                continue  # every piece must be good: no need to look at their shapes
            if accept is not None and not accept(ws, len(good)):
                continue
            for k in np.flatnonzero(good):
                good[k] = solidity(ws == k + 1) >= params.split_min_solidity
                if not params.split_partial and not good[k]:
                    break
            if not params.split_partial and not good.all():
                continue
            key = (int(good.sum()), float(np.mean(good)))
            if good.any() and (best is None or key > best[0]):
                best = (key, ws, good)
    if best is None:
        return None
    return best[1], best[2]


def whole_pieces(local, signal, med_obj, params, width) -> np.ndarray | None:
    """The object ``local`` cut by :func:`split_by_levels` into pieces that are every one
    chromosome-sized (``split_partial`` off): int32 piece labels, 0 outside the object; None
    when no level gives two such pieces."""
    split = split_by_levels(local, signal, med_obj, replace(params, split_partial=False), width)
    if split is None:
        return None
    pieces = np.where(local, split[0], 0).astype(np.int32)
    return pieces if len(np.unique(pieces[pieces > 0])) >= 2 else None


def neck_contacts(ws: np.ndarray, n: int) -> dict[tuple[int, int], int]:
    """(a, b) with a < b -> how many pixels of piece b touch piece a (4-neighbours): the length
    of the cut between them."""
    index = np.arange(ws.size).reshape(ws.shape)
    keys = []  # pixel of b * (n + 1) + a, for every b pixel with an a neighbour (a < b)
    for here, there, at in (
        (ws[:, 1:], ws[:, :-1], index[:, 1:]),
        (ws[:, :-1], ws[:, 1:], index[:, :-1]),
        (ws[1:, :], ws[:-1, :], index[1:, :]),
        (ws[:-1, :], ws[1:, :], index[:-1, :]),
    ):
        touch = (here > there) & (there > 0)
        keys.append(at[touch].astype(np.int64) * (n + 1) + there[touch])
    touching = np.unique(np.concatenate(keys))
    a = touching % (n + 1)
    b = ws.ravel()[touching // (n + 1)]
    counts = np.bincount(a * (n + 1) + b, minlength=(n + 1) ** 2)
    return {(int(k) // (n + 1), int(k) % (n + 1)): int(counts[k]) for k in np.flatnonzero(counts)}


#: erosion radii, over the longest allowed cut, that look for a neck: around 1/sqrt(2) = 0.71
NECK_EROSIONS = (0.6, 0.7, 0.8)


def _may_pinch(local: np.ndarray, max_cut: float) -> bool:
    """Whether the object can have a neck that every cut shorter than ``max_cut`` px crosses.

    Such a neck is about sqrt(2) x ``max_cut`` wide at most (a cut counted in pixels may run
    diagonally), so eroding by a little over half that width disconnects it, while the pieces,
    each at least a chromatid wide (2.5 x ``max_cut``), keep their cores. Pixels blur that
    bound, so the object is eroded by each of ``NECK_EROSIONS`` x ``max_cut``: an object whose
    core stays in one piece at every radius has no such neck. The cheap test that saves the
    watershed levels on most single chromosomes."""
    from scipy import ndimage as ndi

    distance = ndi.distance_transform_edt(np.pad(local, 1))
    return any(ndi.label(distance > f * max_cut)[1] >= 2 for f in NECK_EROSIONS)


def pairs_as_sisters(pieces, n, width, med_obj, params, pair_limits) -> bool:
    """Whether the sister-chromatid pairing (:func:`.pairing.group_pairs`, with the spread's
    ``pair_limits``) would group some of the ``n`` ``pieces`` again: the two chromatids of one
    chromosome, not two chromosomes. False without limits."""
    from scipy import ndimage as ndi

    if pair_limits is None or pair_limits.max_blob_width is None:
        return False
    half = [ndi.distance_transform_edt(np.pad(pieces == k, 1)).max() for k in range(1, n + 1)]
    limits = replace(pair_limits, piece_half_width=np.array(half))
    group = group_pairs(pieces.astype(np.int32), n, width, med_obj, params, limits=limits)
    return len(np.unique(group[1:])) < n


def split_at_necks(local, signal, med_obj, params, width, pair_limits=None):
    """Split a kept single object that is two or more chromosomes touching at a neck.

    A chromosome is about equally wide along its length, across bands and its centromere;
    two chromosomes touching meet where the outline pinches. The object is cut (watershed,
    :func:`split_by_levels`) only where every cut between its pieces is shorter than
    ``split_neck_factor`` x the chromatid ``width``, and only into pieces that the
    sister-chromatid pairing would not group again (two chromatids of one chromosome meeting at
    their centromere stay one chromosome). Returns ``(piece_labels, good_flags)`` or None."""
    if not (params.split_neck_factor > 0 and width):
        return None
    max_cut = params.split_neck_factor * width
    if not _may_pinch(local, max_cut):
        return None

    def at_necks(ws: np.ndarray, n: int) -> bool:
        cuts = neck_contacts(ws, n)
        if not cuts or max(cuts.values()) > max_cut:
            return False
        return not pairs_as_sisters(ws, n, width, med_obj, params, pair_limits)

    return split_by_levels(
        local,
        signal,
        med_obj,
        replace(params, split_partial=False),
        width,
        accept=at_necks,
        by_shape=params.split_by_outline,
    )
