"""``segment_spread``: the steps of the segmentation in order, each a short function."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_chromosome_sort.files.io import chromosome_signal, detect_polarity, to_gray
from napari_chromosome_sort.segmentation.bands import join_band_cuts
from napari_chromosome_sort.segmentation.crossings.detect import finish_crossings
from napari_chromosome_sort.segmentation.flatten import flatten
from napari_chromosome_sort.segmentation.learned.junctions import split_junctions
from napari_chromosome_sort.segmentation.learned.pixels import cut_clusters
from napari_chromosome_sort.segmentation.nuclei import find_nuclei, name_convex_clusters
from napari_chromosome_sort.segmentation.pairing import (
    PairLimits,
    group_pairs,
    median_object_area,
    median_object_width,
    neighbours,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams, validate_params
from napari_chromosome_sort.segmentation.result import (
    Segmentation,
    build_segmentation,
    empty_segmentation,
)
from napari_chromosome_sort.segmentation.signal import (
    Levels,
    denoise,
    estimate_background,
    spread_levels,
)
from napari_chromosome_sort.segmentation.splitting import split_at_necks, split_by_levels


def segment_spread(image, params: SegmentationParams | None = None) -> Segmentation:
    """Segment a spread (grey or RGB, any dtype) into labelled objects with status + reason."""
    params = params or SegmentationParams()
    validate_params(params)
    polarity, corrected, pixel_noise, denoised = _corrected_signal(image, params)
    shape = corrected.shape
    levels = spread_levels(corrected, params)
    if levels is None:
        return empty_segmentation(shape, polarity, params, corrected)

    label_img = np.zeros(shape, np.int32)
    objects: list[dict] = []
    pieces, n_pieces, nucleus_mask = _pieces_and_nuclei(corrected, levels, params)
    _add_nuclei(label_img, objects, nucleus_mask, levels.typical_area, params)
    if n_pieces == 0:
        return build_segmentation(label_img, objects, corrected, polarity, params, shape)

    width, half_widths, med_piece = _piece_measures(pieces, n_pieces)
    group, med_obj, pair_limits = _pair_chromatids(
        pieces, n_pieces, width, half_widths, med_piece, params
    )
    _add_objects(
        label_img, objects, pieces, group, n_pieces, corrected, med_obj, width, pair_limits, params
    )
    _grow_objects(label_img, objects, corrected, levels, width, params)
    if join_band_cuts(label_img, objects, corrected, width, params):
        _renumber(label_img, objects)
    _flag_faint(label_img, objects, corrected, params)
    # ---- crossings: two chromosomes lying across each other form one X/T-shaped piece; it is
    # resolved into its two chromosomes where its arms pair into two straight ones, else set
    # aside as cluster ---------------------------------------------------------------------
    crossing_masks = finish_crossings(
        label_img, objects, corrected, med_obj, width, params, polarity
    )
    # ---- where the rules set a cluster aside, the learned pixel classes cut it (fluorescence) ---
    cut = cut_clusters(label_img, objects, corrected, levels.typical_peak, width, params, polarity)
    crossing_masks.update(cut)
    # ---- kept objects that are two touching chromosomes, cut where they meet (learned) ----
    split_junctions(label_img, objects, corrected, width, params, polarity, (med_obj, pair_limits))
    _restate_sizes(label_img, objects, med_obj, params)
    name_convex_clusters(label_img, objects, med_obj, params)
    stats = {
        "threshold_low": levels.low,
        "threshold": levels.object,
        "median_area": med_obj,
        "width": width,
        "noise": pixel_noise,
        "denoised": denoised,
    }
    seg = build_segmentation(label_img, objects, corrected, polarity, params, shape, stats)
    seg.crossing_masks = crossing_masks
    seg.pair_limits = pair_limits
    return seg


def _corrected_signal(image, params: SegmentationParams):
    """(polarity, background-corrected signal with objects bright, pixel noise, denoised?)."""
    from scipy import ndimage as ndi

    polarity = params.polarity or detect_polarity(to_gray(image))
    raw = chromosome_signal(image, polarity)
    raw, pixel_noise, denoised = denoise(raw, params)
    signal = ndi.gaussian_filter(raw, params.smooth_sigma) if params.smooth_sigma > 0 else raw
    corrected = np.clip(signal - estimate_background(signal, params), 0, None).astype(np.float32)
    corrected = flatten(corrected, pixel_noise, params, polarity)
    return polarity, corrected, pixel_noise, denoised


def _pieces_and_nuclei(corrected: np.ndarray, levels: Levels, params: SegmentationParams):
    """(pieces above the object threshold, their number, nucleus mask).

    Nuclei are found on a smoothed signal above the noise floor, so that pale nuclei are whole
    discs, then opened with a disk wider than a chromosome so that chromosomes lying against a
    nucleus and the chromosome spread itself fall away; a nucleus must be almost fully stained.
    Pieces lying mostly in a nucleus' interior are absorbed into it; pieces on its rim
    (chromosomes lying against a nucleus) are kept and cut out of the nucleus.
    """
    from scipy import ndimage as ndi

    shape = corrected.shape
    nucleus_mask = find_nuclei(corrected, levels.typical_area, levels.low, params)
    pieces, n_pieces = ndi.label(corrected > levels.object)
    piece_areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    if nucleus_mask.any():
        rim = max(1.0, params.nucleus_rim_factor * np.sqrt(levels.typical_area))
        interior = np.zeros(shape, bool)
        for sl in ndi.find_objects(ndi.label(nucleus_mask)[0]):
            interior[sl] = ndi.distance_transform_edt(np.pad(nucleus_mask[sl], 1))[1:-1, 1:-1] > rim
        inside = np.bincount(pieces[interior], minlength=n_pieces + 1)
        frac = inside / np.maximum(piece_areas, 1)
        absorb_ids = np.flatnonzero(frac > 0.5)
        absorb_ids = absorb_ids[absorb_ids > 0]
        if absorb_ids.size:
            absorb = np.isin(pieces, absorb_ids)
            nucleus_mask |= absorb
            pieces[absorb] = 0
        pieces[interior] = 0  # a nucleus keeps its interior ...
        nucleus_mask &= pieces == 0  # ... and chromosomes lying on its rim keep theirs ...
        _absorb_enclosed(pieces, nucleus_mask, corrected, levels, params)  # ... or are its texture
        piece_areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    small = piece_areas < params.min_area_px
    small[0] = False
    pieces[small[pieces]] = 0
    pieces, n_pieces = ndi.label(pieces > 0)
    return pieces, n_pieces, nucleus_mask


def _absorb_enclosed(pieces, nucleus_mask, corrected, levels: Levels, params) -> None:
    """Pieces whose outline lies mostly on a nucleus and that are fainter than a chromosome
    (peak below ``nucleus_enclosed_min_peak`` x the typical peak) are dense spots of the
    nucleus' own texture: they join the nucleus. A chromosome lying on a nucleus' halo is as
    dense as the other chromosomes of the spread and stays."""
    from scipy import ndimage as ndi

    n = int(pieces.max()) + 1
    ring = ndi.grey_dilation(pieces, size=3) * (pieces == 0)  # each piece's outer outline
    on_nucleus = np.bincount(ring[nucleus_mask].ravel(), minlength=n)
    outline = np.bincount(ring.ravel(), minlength=n)
    inside = pieces > 0
    peaks = np.full(n, -np.inf)
    np.maximum.at(peaks, pieces[inside], corrected[inside])  # ndi.maximum sorts every pixel
    enclosed = (on_nucleus > 0.5 * np.maximum(outline, 1)) & (
        peaks < params.nucleus_enclosed_min_peak * levels.typical_peak
    )
    enclosed[0] = False
    if enclosed.any():
        absorb = enclosed[pieces]
        nucleus_mask |= absorb
        pieces[absorb] = 0


def _add_nuclei(label_img, objects, nucleus_mask, typical_area, params) -> None:
    """One ``nucleus`` object per connected component of the nucleus mask."""
    from scipy import ndimage as ndi

    nuc_lab, _ = ndi.label(ndi.binary_fill_holes(nucleus_mask))
    for sl_i, sl in enumerate(ndi.find_objects(nuc_lab)):
        if sl is None:
            continue
        local = nuc_lab[sl] == sl_i + 1
        if local.sum() < 0.5 * params.nucleus_area_factor * typical_area:
            continue  # a sliver left over after cutting out a chromosome lying on the rim
        label = len(objects) + 1
        label_img[sl][local] = label
        size = local.sum() / max(typical_area, 1)
        objects.append(
            {
                "label": label,
                "status": "nucleus",
                "reason": "large, round, uniformly stained object "
                f"(~{size:.0f}x the typical object): interphase nucleus",
                "n_parts": 1,
            }
        )


def _piece_measures(pieces, n_pieces) -> tuple[float, np.ndarray, float]:
    """(chromatid width, each piece's largest inscribed radius, median piece area)."""
    from scipy import ndimage as ndi

    areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)[1:].astype(float)
    med_piece = float(np.median(areas)) if len(areas) else 1.0
    half_widths = np.zeros(n_pieces, float)
    for i, sl in enumerate(ndi.find_objects(pieces)):
        if sl is not None:
            local = np.pad(pieces[sl] == i + 1, 1)
            half_widths[i] = float(ndi.distance_transform_edt(local).max())
    typical_pieces = (areas >= 0.3 * med_piece) & (areas <= 3 * med_piece)
    width = float(2 * np.median(half_widths[typical_pieces])) if typical_pieces.any() else 4.0
    return width, half_widths, med_piece


def _pair_chromatids(pieces, n_pieces, width, half_widths, med_piece, params):
    """(piece -> group representative, median object area, pair limits).

    The first pass gives the spread's objects, hence the median chromosome size and width; the
    second pairs only what the evidence supports. Sister chromatids are each about
    half as wide as a whole chromosome of the spread, so both blobs of a pair must be at most
    ``pair_max_width_ratio`` x the median object width; two whole chromosomes side by side are
    full width and stay apart. A union larger than a chromosome can be is refused too. When the
    second pass found pairs, a third also allows twins, i.e. near-identical blobs in any
    arrangement, as thin as the chromatids of those pairs.
    """
    near = neighbours(pieces, width, params)
    group = group_pairs(pieces, n_pieces, width, med_piece, params, near=near)
    med_obj = median_object_area(pieces, group, params)
    limits = PairLimits()
    if params.pair_chromatids:
        chromosome_width = median_object_width(pieces, group, med_obj, params)
        limits = PairLimits(
            max_union=params.pair_max_union_factor * med_obj,
            max_blob_width=params.pair_max_width_ratio * chromosome_width,
            piece_half_width=half_widths,
        )
        group = group_pairs(pieces, n_pieces, width, med_piece, params, limits, near)
        paired = np.flatnonzero(np.bincount(group[1:], minlength=n_pieces + 1) > 1)
        in_pair = np.isin(group[1:], paired)
        if in_pair.sum() >= 4:
            limits.twin_max_half_width = params.pair_twin_width_factor * float(
                np.median(half_widths[in_pair])
            )
            group = group_pairs(pieces, n_pieces, width, med_piece, params, limits, near)
        med_obj = median_object_area(pieces, group, params)
    return group, med_obj, limits


def _add_objects(
    label_img, objects, pieces, group, n_pieces, corrected, med_obj, width, pair_limits, params
) -> None:
    """One object per group of pieces, with its status by size and place: ``debris``,
    ``border``, ``cluster`` (too large; split into chromosome-shaped pieces where it can be) or
    ``chromosome``."""
    from scipy import ndimage as ndi

    grouped = group[pieces]
    grouped[pieces == 0] = 0
    n_parts_of = np.bincount(group[1:], minlength=n_pieces + 1)
    group_ids = np.unique(grouped)
    group_ids = group_ids[group_ids > 0]
    g_slices = ndi.find_objects(grouped)
    H, W = label_img.shape
    margin = params.border_margin_px
    for gid in group_ids:
        sl = g_slices[gid - 1]
        local = grouped[sl] == gid
        area = int(local.sum())
        n_parts = int(n_parts_of[gid])
        y0, x0 = sl[0].start, sl[1].start
        y1, x1 = sl[0].stop, sl[1].stop
        at_border = y0 < margin or x0 < margin or y1 > H - margin or x1 > W - margin
        rel = area / max(med_obj, 1.0)
        sized = None  # a reason quoting sizes: restated in the table's numbers at the end
        if area < params.debris_area_fraction * med_obj:
            status = "debris"
            reason = (
                f"too small: {area} px above the object threshold < "
                f"{params.debris_area_fraction:g}x the median object ({med_obj:.0f} px)"
            )
            sized = "debris"
        elif at_border:
            status = "border"
            reason = "touches the image edge (may be cut off)"
        elif rel > params.cluster_area_factor:
            status = "cluster"
            reason = (
                f"too large for one chromosome ({rel:.1f}x the median object): touching or "
                "overlapping chromosomes"
            )
            if params.split_touching and n_parts == 1:
                split = split_by_levels(local, corrected[sl], med_obj, params, width)
                if split is not None:
                    _add_split_pieces(
                        label_img, objects, sl, *split, med_obj, width, pair_limits, params
                    )
                    continue
                reason += " that could not be split into chromosome-sized pieces"
            sized = "cluster"
        else:
            status = "chromosome"
            if params.split_touching and n_parts == 1:
                split = split_at_necks(local, corrected[sl], med_obj, params, width, pair_limits)
                if split is not None:
                    _add_split_pieces(
                        label_img, objects, sl, *split, med_obj, width, pair_limits, params
                    )
                    continue
            reason = (
                _pair_reason(pieces[sl], grouped[sl] == gid, n_parts, pair_limits, params)
                if n_parts > 1
                else f"single object, {rel:.1f}x the median size"
            )
            sized = None if n_parts > 1 else "single"
        label = len(objects) + 1
        label_img[sl][local] = label
        objects.append({"label": label, "status": status, "reason": reason, "n_parts": n_parts})
        if sized:
            objects[-1]["sized"] = (sized, area, rel, reason)


def _restate_sizes(label_img, objects, med_obj, params) -> None:
    """Reasons that quote sizes, in the numbers the objects table shows: the object's final
    (grown) area and the median final area of the kept chromosomes, with the core above the
    object threshold that the size rule judged beside them (a reason rewritten by a later step
    is left as it is)."""
    areas = np.bincount(label_img.ravel())
    kept = [areas[o["label"]] for o in objects if o["status"] == "chromosome"]
    median = float(np.median(kept)) if kept else 0.0
    for o in objects:
        kind, core, core_rel, written = o.pop("sized", (None, 0, 0.0, ""))
        if kind is None or o["reason"] != written:
            continue
        area = int(areas[o["label"]]) if o["label"] < len(areas) else 0
        of_median = (
            f"{area / median:.1f}x the median chromosome ({median:.0f} px)" if median else ""
        )
        if kind == "debris":
            o["reason"] = (
                f"too small: {area} px; its core above the object threshold ({core} px) is under "
                f"{params.debris_area_fraction:g}x the median core ({med_obj:.0f} px)"
            )
        elif kind == "cluster":
            o["reason"] = written.replace(
                f"({core_rel:.1f}x the median object)",
                f"({area} px, {of_median}; core {core_rel:.1f}x the median core)",
            )
        elif median:
            o["reason"] = f"single object, {area} px, {of_median}"


def _pair_reason(pieces, member, n_parts: int, limits: PairLimits, params) -> str:
    """The pairing decision with its measured cue: each blob's width (minor axis) relative to
    the width of the spread's chromosomes."""
    from skimage.measure import regionprops

    reason = f"{n_parts} separated sister chromatids grouped as one chromosome"
    if limits.max_blob_width is None or not params.pair_max_width_ratio > 0:
        return reason
    chromosome_width = limits.max_blob_width / params.pair_max_width_ratio
    widths = [r.axis_minor_length for r in regionprops(np.where(member, pieces, 0))]
    ratios = ", ".join(f"{w / chromosome_width:.2f}" for w in widths)
    return f"{reason} (blob widths {ratios} x the spread's chromosome width)"


def _add_split_pieces(
    label_img, objects, sl, ws, good, med_obj, width, pair_limits, params
) -> None:
    """The pieces of a split object (``ws`` labels in the window ``sl``): chromosome-shaped
    ones are kept (sister chromatids among them grouped again), the others stay ``cluster``."""
    from scipy import ndimage as ndi

    n_ws = len(good)
    sub = np.where(np.isin(ws, np.flatnonzero(good) + 1), ws, 0).astype(np.int32)
    sub_half_width = np.array(
        [ndi.distance_transform_edt(np.pad(ws == k, 1)).max() for k in range(1, n_ws + 1)]
    )
    limits = replace(pair_limits, piece_half_width=sub_half_width)
    sub_group = group_pairs(sub, n_ws, width, med_obj, params, limits=limits)
    merged = sub_group[ws]
    merged[ws == 0] = 0
    ids = np.unique(merged[merged > 0])
    # the pieces of one split are not joined again as band cuts
    split_of = len(objects) + 1 if params.split_by_outline else None
    for k in ids:
        piece = merged == k
        parts = int(np.sum(sub_group[1:] == k))
        label = len(objects) + 1
        label_img[sl][piece] = label
        if good[k - 1]:
            status = "chromosome"
            reason = f"split from a group of touching objects ({len(ids)} pieces)"
            if parts > 1:
                reason += "; separated sister chromatids grouped"
        else:
            status = "cluster"
            reason = "part of a touching group that could not be cut into chromosome-shaped pieces"
        objects.append(
            {
                "label": label,
                "status": status,
                "reason": reason,
                "n_parts": parts,
                "split_of": split_of,
            }
        )


def _grow_objects(label_img, objects, corrected, levels: Levels, width, params) -> None:
    """Grow the objects back to their full extent: the object threshold is tight so that
    neighbours and chromatids separate; the outline of a chromosome lies lower."""
    if not (params.grow_fraction and params.grow_fraction > 0 and objects):
        return
    from skimage.segmentation import expand_labels

    step = max(1, corrected.size // 400_000)
    sample = corrected.ravel()[::step]
    center = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - center)))
    t_grow = max(
        params.grow_fraction * levels.typical_peak, center + params.nucleus_noise_k * noise
    )
    if t_grow >= levels.object:
        return
    growable = np.array(
        [0] + [o["status"] != "nucleus" for o in sorted(objects, key=lambda o: o["label"])],
        bool,
    )
    seeds = np.where(growable[label_img], label_img, 0)
    grown = expand_labels(seeds, distance=max(1.0, params.grow_max_factor * width))
    add = (label_img == 0) & (grown > 0) & (corrected > t_grow)
    label_img[add] = grown[add]


def _renumber(label_img, objects) -> None:
    """Labels 1..n again, in the objects' order, after some were joined."""
    lookup = np.zeros(int(label_img.max()) + 1, np.int32)
    for new, o in enumerate(objects, 1):
        lookup[o["label"]] = new
        o["label"] = new
    label_img[...] = lookup[label_img]


def _flag_faint(label_img, objects, corrected, params) -> None:
    """Chromosomes are the most densely stained objects of a spread: a kept object much fainter
    than the typical one is a piece of a nucleus or background stain -> ``debris``."""
    if not (params.faint_fraction and params.faint_fraction > 0 and objects):
        return
    from scipy import ndimage as ndi

    kept = [o for o in objects if o["status"] == "chromosome"]
    if len(kept) < 3:
        return
    means = np.asarray(ndi.mean(corrected, label_img, [o["label"] for o in kept]))
    typical = float(np.median(means))
    for o, m in zip(kept, means, strict=True):
        if m < params.faint_fraction * typical:
            o["status"] = "debris"
            o["reason"] = (
                f"too faint for a chromosome ({m / typical:.2f}x the typical stain): "
                "a piece of a nucleus or background stain"
            )
