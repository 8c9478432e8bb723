"""Segment a metaphase spread into objects, each with a status and a human-readable reason.

Qt-free. Pipeline (every threshold adapts to the image; every knob is in SegmentationParams):

1. ``chromosome_signal`` (objects bright, polarity auto-detected), light smoothing, subtraction of a
   smooth background estimated by a large grey opening on a downsampled copy.
2. A low (Otsu) threshold finds everything stained. Its components give the spread's typical
   object peak intensity; the object threshold is a fraction of that peak ("half maximum"), which
   separates sister chromatids and neighbours far better than Otsu on a blurred image.
3. Nuclei: low-threshold components much larger than the median object and round -> ``nucleus``
   (object pieces inside them are absorbed).
4. Sister-chromatid pairs (type C: two parallel blobs with a gap) are grouped into ONE object by
   proximity, similar size, parallel orientation and side-by-side placement (mutual best match).
5. Sizes relative to the median object: too small -> ``debris``; too large -> optional watershed
   split that is kept only if every piece is chromosome-sized, else ``cluster``.
6. Objects touching the image edge -> ``border``; everything else -> ``chromosome``.
7. Crossings: a kept single piece that is larger than the median chromosome, not convex, with a
   branched skeleton and a brighter (double-DNA) overlap plateau -> ``cluster``; and kept single
   pieces that meet another kept object along a cut brighter than both (a crossing that step 5
   cut through its overlap; touching neighbours meet in a valley) -> ``cluster``.
8. Fluorescence spreads only (by default): the learned crossing score of each kept single piece
   (:mod:`.crossing_model`, 16 shape measures, relative to the spread's typical object) above
   the model's threshold -> ``cluster``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .errors import ChromosortError

STATUSES = ("chromosome", "nucleus", "cluster", "debris", "border")

OBJECT_COLUMNS = [
    "label",
    "status",
    "reason",
    "area",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "centroid_y",
    "centroid_x",
    "eccentricity",
    "solidity",
    "major_axis",
    "minor_axis",
    "orientation",
    "mean_intensity",
    "n_parts",
]


@dataclass
class SegmentationParams:
    """Every knob of :func:`segment_spread`. Sizes are relative to the spread's median object
    unless the name says ``_px``; intensities are relative to the median object peak."""

    polarity: str | None = None  # None = auto ("dark_on_light" | "bright_on_dark")
    smooth_sigma: float = 0.7  # px, Gaussian before thresholding
    max_noise: float = 0.01  # noisier images (after smooth_sigma, x range) are denoised first
    background_fraction: float = 1 / 8  # background opening size as a fraction of min(H, W)
    background_downsample: int = 4
    background_method: str = "opening"  # "opening" (large grey opening) | "masked" (smooth fit
    # to the background pixels only; keeps objects of any size)
    background_k: float = 3.0  # background pixels: below median + k x noise sigma
    threshold: float | None = None  # absolute threshold on the corrected signal (None = auto)
    peak_fraction: float = 0.5  # object threshold = this x median object peak (>= Otsu)
    faint_fraction: float = 0.5  # kept objects fainter than this x the typical one -> debris
    grow_fraction: float = 0.3  # objects are grown back down to this x the peak (0 = off) ...
    grow_max_factor: float = 0.5  # ... by at most this x the chromatid width
    min_area_px: int = 6  # smaller connected pieces are noise and dropped entirely
    debris_area_fraction: float = 0.12  # area < this x median object -> debris
    # nuclei
    nucleus_area_factor: float = 6.0  # low-threshold component area >= this x median -> candidate
    nucleus_min_solidity: float = 0.85
    nucleus_max_eccentricity: float = 0.9
    nucleus_opening_factor: float = 0.5  # opening radius = this x sqrt(median object area)
    nucleus_smooth_factor: float = 0.1  # smoothing sigma = this x sqrt(median object area)
    nucleus_noise_k: float = 4.0  # stain floor = background + k x noise sigma (<= low threshold)
    nucleus_min_fill: float = 0.8  # fraction of a nucleus' pixels that are stained, i.e.
    nucleus_fill_level: float = 0.3  # ... above this x its 90th percentile (a group of
    # chromosomes with halos between them is not uniformly stained)
    nucleus_rim_factor: float = 0.25  # rim width (x sqrt(median area)) where pieces stay separate
    # chromatid pairing (type C)
    pair_chromatids: bool = True
    pair_max_gap_factor: float = 1.2  # max gap between the two blobs, x median blob width
    pair_max_angle_deg: float = 40.0  # max difference in orientation of elongated blobs
    pair_min_elongation: float = 2.2  # orientation only compared when both blobs are this elongated
    pair_max_area_ratio: float = 1.5  # sisters are copies: near-equal areas
    pair_max_union_factor: float = 2.0  # a grouped pair is at most this x the median object
    pair_twin_area_ratio: float = 1.15  # near-identical blobs pair in any arrangement ...
    pair_twin_penalty: float = 1.0  # ... but rank after side-by-side pairs
    pair_twin_width_factor: float = 1.25  # ... and only if as thin as paired chromatids
    pair_gap_weight: float = 0.0  # weight of the gap (in blob widths) in the pairing score
    pair_max_axial_offset: float = 0.6  # centroid offset along the axis, x mean blob length
    pair_max_blob_width_factor: float = 1.8  # blobs wider (minor axis) than this x the chromatid
    # width are whole chromosomes, never sister chromatids (0 = off)
    # touching neighbours
    split_touching: bool = True
    cluster_area_factor: float = 2.6  # area > this x median object -> split attempt / cluster
    split_min_piece_factor: float = 0.35  # every watershed piece must be >= this x median
    split_partial: bool = False  # True: keep the good pieces of a split, the rest stay cluster
    split_max_piece_factor: float = 2.3  # ... and at most this x median (one chromosome)
    split_min_solidity: float = 0.6  # ... and at least this solid
    split_seed_factor: float = 0.2  # seeds smaller than this x median object are ignored
    border_margin_px: int = 1  # objects within this many px of the edge -> border
    # crossing / overlapping chromosomes kept as one piece (X or T shape with a brighter
    # double-DNA region where they overlap) -> cluster
    detect_crossings: bool = True
    crossing_min_area_factor: float = 1.2  # larger than this x the median object ...
    crossing_max_solidity: float = 0.8  # ... not convex (X/T/V shape) ...
    crossing_prune_factor: float = 0.75  # ... skeleton branched after pruning spurs < this x width
    crossing_brightness: float = 1.6  # ... and a plateau brighter than this x the object median
    crossing_min_plateau: float = 0.1  # ... covering at least this x chromatid width squared
    crossing_shape_area_factor: float = 2.2  # without a bright overlap: branched, larger than
    crossing_shape_max_solidity: float = 0.7  # ... this x the median and less solid than this
    crossing_contact_brightness: float = 1.15  # two kept objects meeting along a cut at least
    # this x brighter than both objects' median (a crossing cut through its overlap) -> both
    # cluster (0 = off) ...
    crossing_contact_min_length: float = 0.5  # ... along at least this x the chromatid width
    crossing_score: str = "auto"  # learned shape score (crossing_model.py) -> cluster: "auto" =
    # fluorescence (bright-on-dark) spreads only, "on", "off"; off when detect_crossings is off
    crossing_score_threshold: float | None = None  # on the spread-relative logit; None = model's
    crossing_model: str | None = None  # path of a crossing model JSON; None = the shipped one

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Segmentation:
    labels: np.ndarray  # int32 HxW, 0 = background
    objects: pd.DataFrame
    polarity: str = "dark_on_light"
    params: SegmentationParams = field(default_factory=SegmentationParams)
    signal: np.ndarray | None = field(default=None, repr=False)  # corrected signal, objects bright
    stats: dict = field(default_factory=dict)  # thresholds and typical sizes actually used

    def kept_labels(self) -> list[int]:
        if self.objects.empty:
            return []
        return [int(v) for v in self.objects.loc[self.objects["status"] == "chromosome", "label"]]

    def status_counts(self) -> dict[str, int]:
        counts = self.objects["status"].value_counts().to_dict() if len(self.objects) else {}
        return {status: int(counts.get(status, 0)) for status in STATUSES}


# --------------------------------------------------------------------------------------------
# helpers


def _background(signal: np.ndarray, params: SegmentationParams) -> np.ndarray:
    from scipy import ndimage as ndi

    f = max(1, int(params.background_downsample))
    small = ndi.gaussian_filter(signal, 2.0)[::f, ::f] if f > 1 else signal
    size = max(5, int(round(min(signal.shape) * params.background_fraction / f)))
    if params.background_method == "opening":
        bg = ndi.grey_opening(small, size=(size, size))
        bg = ndi.uniform_filter(bg, size)
    else:
        # smooth interpolation of the background pixels only (robustly below the stain), so
        # that objects of any size (large nuclei included) are not taken for background
        center = float(np.median(small))
        sigma = 1.4826 * float(np.median(np.abs(small - center))) + 1e-6
        is_bg = small < center + params.background_k * sigma
        is_bg = ndi.binary_erosion(is_bg, iterations=2, border_value=1)
        if is_bg.mean() < 0.05:
            is_bg = small <= np.quantile(small, 0.3)
        weight = ndi.gaussian_filter(is_bg.astype(np.float32), size / 2.0, mode="nearest")
        total = ndi.gaussian_filter(np.where(is_bg, small, 0.0), size / 2.0, mode="nearest")
        bg = np.where(weight > 1e-3, total / np.maximum(weight, 1e-3), center)
    if f > 1:
        bg = ndi.zoom(
            bg,
            (signal.shape[0] / bg.shape[0], signal.shape[1] / bg.shape[1]),
            order=1,
            grid_mode=True,
            mode="nearest",
        )
        bg = bg[: signal.shape[0], : signal.shape[1]]
    return bg.astype(np.float32)


def denoise(raw: np.ndarray, params: SegmentationParams) -> tuple[np.ndarray, float, bool]:
    """(signal, its pixel noise, whether it was denoised). A signal (in [0, 1]) whose noise the
    ``smooth_sigma`` Gaussian would leave above ``max_noise`` (white noise: sigma_n / (2 sqrt(pi)
    s)) is denoised first by non-local means, which keeps thin chromatids and the gaps between
    them that a wider Gaussian would blur together."""
    from .denoising import nl_means, stain_noise

    noise = stain_noise(raw)
    # (a Gaussian narrower than half a pixel averages next to nothing)
    left = noise / (2.0 * np.sqrt(np.pi) * max(float(params.smooth_sigma), 0.5))
    if params.max_noise <= 0 or left <= params.max_noise:
        return raw, noise, False
    return nl_means(raw, noise), noise, True


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size == 0 or values.max() - values.min() < 1e-6:
        return float("inf")
    step = max(1, values.size // 400_000)
    return float(threshold_otsu(values[::step]))


def _round_blobs(lab, areas, min_area: float, params: SegmentationParams) -> np.ndarray:
    """Per component 1..n of ``lab``: larger than ``min_area``, round and solid like an interphase
    nucleus (``nucleus_min_solidity``, ``nucleus_max_eccentricity``), not like a chromosome or a
    group of them."""
    from scipy import ndimage as ndi

    out = np.zeros(len(areas) - 1, bool)
    big = np.flatnonzero(areas[1:] > min_area)
    if big.size:
        slices = ndi.find_objects(lab)
        for i in big:
            p = _props(lab[slices[i]] == i + 1)
            out[i] = (
                p["solidity"] >= params.nucleus_min_solidity
                and p["eccentricity"] <= params.nucleus_max_eccentricity
            )
    return out


def _props(mask: np.ndarray) -> dict:
    """Shape measures of one binary mask (local crop)."""
    from skimage.measure import regionprops

    region = regionprops(mask.astype(np.uint8))[0]
    return {
        "area": int(region.area),
        "eccentricity": float(region.eccentricity),
        "solidity": float(region.solidity),
        "major_axis": float(region.axis_major_length),
        "minor_axis": float(region.axis_minor_length),
        "orientation": float(region.orientation),
    }


def _angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % np.pi
    return float(min(d, np.pi - d))


# --------------------------------------------------------------------------------------------


def segment_spread(image, params: SegmentationParams | None = None) -> Segmentation:
    """Segment a spread (grey or RGB, any dtype) into labelled objects with status + reason."""
    from scipy import ndimage as ndi

    from .io import chromosome_signal, detect_polarity, to_gray

    params = params or SegmentationParams()
    validate_params(params)
    gray = to_gray(image)
    polarity = params.polarity or detect_polarity(gray)
    raw = chromosome_signal(image, polarity)
    shape = raw.shape
    raw, pixel_noise, denoised = denoise(raw, params)
    signal = ndi.gaussian_filter(raw, params.smooth_sigma) if params.smooth_sigma > 0 else raw
    corrected = np.clip(signal - _background(signal, params), 0, None).astype(np.float32)

    # ---- thresholds ----------------------------------------------------------------------
    t_low = _otsu(corrected)
    if not np.isfinite(t_low):
        return _empty(shape, polarity, params, corrected)
    low = corrected > t_low
    low_lab, n_low = ndi.label(low)
    low_areas = np.bincount(low_lab.ravel(), minlength=n_low + 1)
    low_areas[0] = 0
    idx = np.arange(1, n_low + 1)
    peaks = np.asarray(ndi.maximum(corrected, low_lab, idx)) if n_low else np.zeros(0)
    ok = low_areas[1:] >= max(params.min_area_px, 3)
    if not ok.any():
        return _empty(shape, polarity, params, corrected)
    med_low = float(np.median(low_areas[1:][ok]))
    # nucleus-like blobs are left out of the typical object size: where nuclei hold most of the
    # stain they would otherwise set it, and nuclei would then be too small to be found
    nucleus_like = _round_blobs(low_lab, low_areas, 5 * med_low, params)
    typical = ok & (low_areas[1:] < 20 * med_low) & ~nucleus_like
    if typical.any():
        # area-weighted median: the size of the object an average stained pixel belongs to,
        # robust to many specks of debris
        sizes = np.sort(low_areas[1:][typical]).astype(float)
        cumulative = np.cumsum(sizes)
        med_low = float(sizes[np.searchsorted(cumulative, 0.5 * cumulative[-1])])
    typical_peak = float(np.median(peaks[typical])) if typical.any() else float(peaks.max())
    if params.threshold is not None:
        t_obj = float(params.threshold)
    else:
        t_obj = max(t_low, params.peak_fraction * typical_peak)
    mask = corrected > t_obj

    # ---- nuclei: large, round regions of faint but continuous stain -------------------------
    # (found on a smoothed signal above the noise floor, so that pale nuclei are whole discs,
    # then opened with a disk wider than a chromosome so that chromosomes lying against a
    # nucleus and the chromosome spread itself fall away; a nucleus must be almost fully stained)
    objects: list[dict] = []
    label_img = np.zeros(shape, np.int32)
    nucleus_mask = _find_nuclei(corrected, med_low, t_low, params)

    # ---- object pieces ----------------------------------------------------------------------
    pieces, n_pieces = ndi.label(mask)
    piece_areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    # absorb pieces lying mostly in a nucleus' interior; pieces on its rim (chromosomes lying
    # against a nucleus) are kept and cut out of the nucleus
    if nucleus_mask.any():
        rim = max(1.0, params.nucleus_rim_factor * np.sqrt(med_low))
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
        nucleus_mask &= pieces == 0  # ... and chromosomes lying on its rim keep theirs
        piece_areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    small = piece_areas < params.min_area_px
    small[0] = False
    pieces[small[pieces]] = 0
    pieces, n_pieces = ndi.label(pieces > 0)

    # nucleus objects: connected components of the nucleus mask
    nuc_lab, n_nuc = ndi.label(ndi.binary_fill_holes(nucleus_mask))
    next_label = 1
    for sl_i, sl in enumerate(ndi.find_objects(nuc_lab)):
        if sl is None:
            continue
        local = nuc_lab[sl] == sl_i + 1
        if local.sum() < 0.5 * params.nucleus_area_factor * med_low:
            continue  # a sliver left over after cutting out a chromosome lying on the rim
        label_img[sl][local] = next_label
        objects.append(
            {
                "label": next_label,
                "status": "nucleus",
                "reason": "large, round, uniformly stained object "
                f"(~{local.sum() / max(med_low, 1):.0f}x the typical object): interphase nucleus",
                "n_parts": 1,
            }
        )
        next_label += 1

    if n_pieces == 0:
        return _finish(label_img, objects, corrected, polarity, params, shape)

    # ---- piece measures ----------------------------------------------------------------------
    areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)[1:].astype(float)
    med_piece = float(np.median(areas)) if len(areas) else 1.0
    max_dt = np.zeros(n_pieces, float)
    for i, sl in enumerate(ndi.find_objects(pieces)):
        if sl is not None:
            local = np.pad(pieces[sl] == i + 1, 1)
            max_dt[i] = float(ndi.distance_transform_edt(local).max())
    typical_pieces = (areas >= 0.3 * med_piece) & (areas <= 3 * med_piece)
    width = float(2 * np.median(max_dt[typical_pieces])) if typical_pieces.any() else 4.0

    # ---- chromatid pairing ------------------------------------------------------------------
    # two passes: the first gives the median chromosome size, the second refuses pairs whose
    # union would be larger than a chromosome can be (two whole chromosomes side by side)
    # (twins, i.e. near-identical blobs in any arrangement, are only allowed in the second pass
    # and only for blobs as thin as the chromatids of the confident side-by-side pairs)
    group = _group_pairs(pieces, n_pieces, width, med_piece, params)
    med_obj = _median_object_area(pieces, group, params)
    twin_width = None
    if params.pair_chromatids:
        max_pair = params.pair_max_union_factor * med_obj
        paired = np.flatnonzero(np.bincount(group[1:], minlength=n_pieces + 1) > 1)
        in_pair = np.isin(group[1:], paired)
        twin_width = (
            params.pair_twin_width_factor * float(np.median(max_dt[in_pair]))
            if in_pair.sum() >= 4
            else None
        )
        group = _group_pairs(
            pieces,
            n_pieces,
            width,
            med_piece,
            params,
            max_union=max_pair,
            piece_half_width=max_dt,
            twin_max_half_width=twin_width,
        )
        med_obj = _median_object_area(pieces, group, params)
    grouped = group[pieces]
    grouped[pieces == 0] = 0
    n_parts_of = np.bincount(group[1:], minlength=n_pieces + 1)

    # ---- objects from groups ------------------------------------------------------------------
    group_ids = np.unique(grouped)
    group_ids = group_ids[group_ids > 0]
    g_slices = ndi.find_objects(grouped)

    H, W = shape
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
        if area < params.debris_area_fraction * med_obj:
            status = "debris"
            reason = (
                f"too small: {area} px < {params.debris_area_fraction:g}x the median object "
                f"({med_obj:.0f} px)"
            )
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
                split = _split_by_levels(local, corrected[sl], med_obj, params, width)
                if split is not None:
                    ws, good = split
                    n_ws = len(good)
                    sub = np.where(np.isin(ws, np.flatnonzero(good) + 1), ws, 0).astype(np.int32)
                    sub_half_width = np.array(
                        [
                            ndi.distance_transform_edt(np.pad(ws == k, 1)).max()
                            for k in range(1, n_ws + 1)
                        ]
                    )
                    sub_group = _group_pairs(
                        sub,
                        n_ws,
                        width,
                        med_obj,
                        params,
                        max_union=params.pair_max_union_factor * med_obj,
                        piece_half_width=sub_half_width,
                        twin_max_half_width=twin_width,
                    )
                    merged = sub_group[ws]
                    merged[ws == 0] = 0
                    ids = np.unique(merged[merged > 0])
                    for k in ids:
                        piece = merged == k
                        parts = int(np.sum(sub_group[1:] == k))
                        label_img[sl][piece] = next_label
                        if good[k - 1]:
                            status_k = "chromosome"
                            reason_k = f"split from a group of touching objects ({len(ids)} pieces)"
                            if parts > 1:
                                reason_k += "; separated sister chromatids grouped"
                        else:
                            status_k = "cluster"
                            reason_k = (
                                "part of a touching group that could not be cut into "
                                "chromosome-shaped pieces"
                            )
                        objects.append(
                            {
                                "label": next_label,
                                "status": status_k,
                                "reason": reason_k,
                                "n_parts": parts,
                            }
                        )
                        next_label += 1
                    continue
                reason += " that could not be split into chromosome-sized pieces"
        else:
            status = "chromosome"
            reason = (
                f"{n_parts} separated sister chromatids grouped as one chromosome"
                if n_parts > 1
                else f"single object, {rel:.1f}x the median size"
            )
        label_img[sl][local] = next_label
        objects.append(
            {"label": next_label, "status": status, "reason": reason, "n_parts": n_parts}
        )
        next_label += 1

    # ---- grow the objects back to their full extent (the object threshold is tight so that
    # neighbours and chromatids separate; the outline of a chromosome lies lower) ----------------
    if params.grow_fraction and params.grow_fraction > 0 and objects:
        step = max(1, corrected.size // 400_000)
        sample = corrected.ravel()[::step]
        center = float(np.median(sample))
        noise = 1.4826 * float(np.median(np.abs(sample - center)))
        t_grow = max(params.grow_fraction * typical_peak, center + params.nucleus_noise_k * noise)
        if t_grow < t_obj:
            growable = np.array(
                [0] + [o["status"] != "nucleus" for o in sorted(objects, key=lambda o: o["label"])],
                bool,
            )
            seeds = np.where(growable[label_img], label_img, 0)
            from skimage.segmentation import expand_labels

            grown = expand_labels(seeds, distance=max(1.0, params.grow_max_factor * width))
            add = (label_img == 0) & (grown > 0) & (corrected > t_grow)
            label_img[add] = grown[add]
    # ---- faint objects: chromosomes are the most densely stained objects of a spread; a kept
    # object much fainter than the typical one is a piece of a nucleus or background stain ------
    if params.faint_fraction and params.faint_fraction > 0 and objects:
        kept = [o for o in objects if o["status"] == "chromosome"]
        if len(kept) >= 3:
            ids = [o["label"] for o in kept]
            means = np.asarray(ndi.mean(corrected, label_img, ids))
            typical = float(np.median(means))
            for o, m in zip(kept, means, strict=True):
                if m < params.faint_fraction * typical:
                    o["status"] = "debris"
                    o["reason"] = (
                        f"too faint for a chromosome ({m / typical:.2f}x the typical stain): "
                        "a piece of a nucleus or background stain"
                    )
    # ---- crossings: two chromosomes lying across each other form one X/T-shaped piece whose
    # overlap is brighter (double DNA); they cannot be cut cleanly -> cluster -----------------
    if params.detect_crossings and objects:
        _flag_crossings(label_img, objects, corrected, med_obj, width, params)
        if _crossing_score_on(params, polarity):
            _flag_by_crossing_score(label_img, objects, corrected, med_obj, width, params)
    stats = {
        "threshold_low": t_low,
        "threshold": t_obj,
        "median_area": med_obj,
        "width": width,
        "noise": pixel_noise,
        "denoised": denoised,
    }
    return _finish(label_img, objects, corrected, polarity, params, shape, stats)


def _skeleton_branched(mask: np.ndarray, prune: float) -> bool:
    """True when the skeleton of ``mask`` still branches (a point with >= 3 neighbours, or >= 3
    end points) after spurs shorter than ``prune`` px have been pruned away."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    kernel = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
    skel = skeletonize(np.pad(mask, 1))
    for _ in range(max(1, int(round(prune)))):
        nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
        ends = skel & (nb <= 1)
        if not ends.any():
            break
        skel &= ~ends
    nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
    return bool((skel & (nb >= 3)).any() or (skel & (nb == 1)).sum() >= 3)


def _flag_crossings(label_img, objects, corrected, med_obj, width, params) -> None:
    """Kept single pieces that look like two crossing chromosomes become ``cluster``: larger
    than the median chromosome, not convex, a branched skeleton, and a bright plateau (the
    double-DNA overlap) of about one chromatid width squared; or meeting another kept object
    along a cut brighter than both (:func:`_flag_bright_contacts`). Sister-chromatid pairs
    grouped from separate blobs are never crossings."""
    from scipy import ndimage as ndi

    candidates = [o for o in objects if o["status"] == "chromosome" and o["n_parts"] == 1]
    if not candidates:
        return
    smooth = ndi.gaussian_filter(corrected, max(1.0, width / 4.0))
    if params.crossing_contact_brightness > 0:
        _flag_bright_contacts(label_img, objects, smooth, width, params)
    slices = ndi.find_objects(label_img)
    for o in candidates:
        if o["status"] != "chromosome":
            continue
        sl = slices[o["label"] - 1]
        if sl is None:
            continue
        local = label_img[sl] == o["label"]
        area = int(local.sum())
        if area < params.crossing_min_area_factor * med_obj:
            continue
        solidity = _props(local)["solidity"]
        if solidity >= params.crossing_max_solidity:
            continue
        if not _skeleton_branched(local, params.crossing_prune_factor * width):
            continue
        rel = area / max(med_obj, 1.0)
        very_irregular = solidity < params.crossing_shape_max_solidity
        if rel > params.crossing_shape_area_factor and very_irregular:
            o["status"] = "cluster"
            o["reason"] = (
                f"branched, non-convex object ({rel:.1f}x the median object, solidity "
                f"{solidity:.2f}): crossing or overlapping chromosomes"
            )
            continue
        values = smooth[sl][local]
        plateau = int(np.sum(values > params.crossing_brightness * float(np.median(values))))
        if plateau < params.crossing_min_plateau * width * width:
            continue
        o["status"] = "cluster"
        o["reason"] = (
            f"X/T-shaped ({rel:.1f}x the median object, branched, with a "
            f"{params.crossing_brightness:g}x brighter overlap): crossing or overlapping "
            "chromosomes"
        )


def _crossing_score_on(params: SegmentationParams, polarity: str) -> bool:
    # bright-field (Giemsa) cohesion spreads resolve sister chromatids: their open X-shaped
    # chromosomes (types B/C) look like crossings to a score trained on DAPI spreads
    if params.crossing_score == "auto":
        return polarity == "bright_on_dark"
    return params.crossing_score == "on"


def _flag_by_crossing_score(label_img, objects, corrected, med_obj, width, params) -> None:
    """Kept single pieces of at least ``min_rel_area`` x the median object whose learned crossing
    score, relative to the spread's typical kept object, is above the threshold -> ``cluster``
    (:meth:`.crossing_model.CrossingModel.flags`)."""
    from .crossing_model import FEATURES, crossing_candidates, load_crossing_model, shape_measures

    model = load_crossing_model(params.crossing_model)
    kept = [o for o in objects if o["status"] == "chromosome"]
    if not kept:
        return
    x = shape_measures(
        label_img,
        corrected,
        [o["label"] for o in kept],
        med_obj,
        width,
        [o["n_parts"] for o in kept],
    )
    threshold = params.crossing_score_threshold
    threshold = model.threshold if threshold is None else threshold
    scores = model.relative_scores(x)  # what model.flags(x) compares, kept for the reason
    flagged = crossing_candidates(x, model.min_rel_area) & (scores > threshold)
    rel_area = np.exp(x[:, FEATURES.index("log_rel_area")])
    for o, score, flag, rel in zip(kept, scores, flagged, rel_area, strict=True):
        if flag:
            o["status"] = "cluster"
            o["reason"] = (
                f"crossing score {score:.1f} (> {threshold:.1f}) at "
                f"{rel:.1f}x the median object: shaped unlike this spread's typical "
                "chromosome, like two crossing or overlapping chromosomes"
            )


def _flag_bright_contacts(label_img, objects, smooth, width, params) -> None:
    """A crossing that the split cut through its overlap leaves kept pieces that meet along a
    cut brighter than both of them (the double-DNA overlap); touching neighbours meet in a
    valley. Single pieces meeting another kept object along such a cut -> ``cluster``."""
    from scipy import ndimage as ndi

    n_labels = int(label_img.max()) + 1
    kept = np.zeros(n_labels, bool)
    for o in objects:
        kept[o["label"]] = o["status"] == "chromosome"
    here, other, values = [], [], []
    for axis in (0, 1):
        a = label_img[:-1] if axis == 0 else label_img[:, :-1]
        b = label_img[1:] if axis == 0 else label_img[:, 1:]
        sel = (a != b) & kept[a] & kept[b]
        if not sel.any():
            continue
        sa = smooth[:-1] if axis == 0 else smooth[:, :-1]
        sb = smooth[1:] if axis == 0 else smooth[:, 1:]
        # every contact pixel pair seen from both sides: (this object, the other, value here)
        here += [a[sel], b[sel]]
        other += [b[sel], a[sel]]
        values += [sa[sel], sb[sel]]
    if not here:
        return
    key = np.concatenate(here).astype(np.int64) * n_labels + np.concatenate(other)
    values = np.concatenate(values)
    order = np.argsort(key, kind="stable")
    key, values = key[order], values[order]
    bounds = np.r_[np.flatnonzero(np.r_[True, key[1:] != key[:-1]]), key.size]
    contact = {}  # (this, other) -> median smoothed signal on this one's side of the contact
    for i0, i1 in zip(bounds[:-1], bounds[1:], strict=True):
        if i1 - i0 >= params.crossing_contact_min_length * width:
            contact[divmod(int(key[i0]), n_labels)] = float(np.median(values[i0:i1]))
    if not contact:
        return
    slices = ndi.find_objects(label_img)
    median = {
        lab: float(np.median(smooth[slices[lab - 1]][label_img[slices[lab - 1]] == lab]))
        for lab in {lab for pair in contact for lab in pair}
    }
    info = {o["label"]: o for o in objects}
    level = params.crossing_contact_brightness
    for (this, that), value in contact.items():
        rel = min(value / max(median[this], 1e-9), contact[(that, this)] / max(median[that], 1e-9))
        o = info[this]
        if o["n_parts"] != 1 or rel < level:
            continue
        o["status"] = "cluster"
        o["reason"] = (
            f"meets object {that} along a cut {rel:.2f}x brighter than both (>= {level:g}x): "
            "crossing chromosomes cut through their double-DNA overlap"
        )


def _find_nuclei(corrected, med_low, t_low, params) -> np.ndarray:
    from scipy import ndimage as ndi

    shape = corrected.shape
    step = max(1, corrected.size // 400_000)
    sample = corrected.ravel()[::step]
    center = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - center))) + 1e-6
    floor = min(center + params.nucleus_noise_k * sigma, t_low)
    scale = np.sqrt(med_low)
    f = max(1, int(scale // 8))  # work downsampled: nuclei are large
    small = corrected[::f, ::f]
    smooth = ndi.gaussian_filter(small, max(1.0, params.nucleus_smooth_factor * scale / f))
    mask = smooth > floor
    radius = max(2, int(round(scale * params.nucleus_opening_factor / f)))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    opened = ndi.binary_opening(np.pad(mask, radius), structure=disk)[
        radius:-radius, radius:-radius
    ]
    lab, n = ndi.label(opened)
    out_small = np.zeros(small.shape, bool)
    min_area = params.nucleus_area_factor * med_low / (f * f)
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        local = ndi.binary_fill_holes(lab[sl] == i)
        area = local.sum()
        if area < min_area:
            continue
        p = _props(local)
        values = smooth[sl][local]
        fill = float(np.mean(values > params.nucleus_fill_level * np.quantile(values, 0.9)))
        if (
            p["solidity"] >= params.nucleus_min_solidity
            and p["eccentricity"] <= params.nucleus_max_eccentricity
            and fill >= params.nucleus_min_fill
        ):
            out_small[sl] |= local
    if f > 1:
        out = np.repeat(np.repeat(out_small, f, axis=0), f, axis=1)[: shape[0], : shape[1]]
        pad = ((0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1]))
        out = np.pad(out, pad, mode="edge")
    else:
        out = out_small
    return out


def _median_object_area(pieces, group, params) -> float:
    grouped = group[pieces]
    grouped[pieces == 0] = 0
    g_areas = np.bincount(grouped.ravel())
    g_areas = g_areas[1:][g_areas[1:] > 0]
    if g_areas.size == 0:
        return 1.0
    med = float(np.median(g_areas))
    plausible = g_areas[g_areas >= params.debris_area_fraction * med]
    return float(np.median(plausible)) if plausible.size else med


def _group_pairs(
    pieces,
    n_pieces,
    width,
    med_piece,
    params,
    max_union=None,
    piece_half_width=None,
    twin_max_half_width=None,
) -> np.ndarray:
    """piece id -> representative id after grouping sister-chromatid pairs (mutual best)."""
    from skimage.measure import regionprops
    from skimage.segmentation import expand_labels

    group = np.arange(n_pieces + 1)
    if not params.pair_chromatids or n_pieces < 2:
        return group
    region_of = {r.label: r for r in regionprops(pieces)}
    gap = max(1.0, params.pair_max_gap_factor * width)
    expanded = expand_labels(pieces, distance=gap / 2.0 + 0.5)
    pairs = set()
    for a, b in ((expanded[:, :-1], expanded[:, 1:]), (expanded[:-1, :], expanded[1:, :])):
        sel = (a != b) & (a > 0) & (b > 0)
        for u, v in zip(a[sel].tolist(), b[sel].tolist(), strict=True):
            pairs.add((min(u, v), max(u, v)))
    candidates = []
    for u, v in pairs:
        if u not in region_of or v not in region_of:
            continue
        if max_union is not None and region_of[u].area + region_of[v].area > max_union:
            continue
        twins_ok = twin_max_half_width is not None and (
            max(piece_half_width[u - 1], piece_half_width[v - 1]) <= twin_max_half_width
        )
        score = _pair_score(
            region_of[u], region_of[v], pieces, width, gap, med_piece, params, twins_ok
        )
        if score is not None:
            candidates.append((score, u, v))
    candidates.sort()
    used = set()
    for _score, u, v in candidates:
        if u in used or v in used:
            continue
        used.update((u, v))
        group[v] = u
    return group


def _pair_score(ru, rv, pieces, width, gap, med_piece, params, twins_ok=False) -> float | None:
    """Score (lower = better) for two blobs being sister chromatids of one chromosome, or None."""
    from scipy import ndimage as ndi

    au, av = float(ru.area), float(rv.area)
    if max(au, av) / max(min(au, av), 1.0) > params.pair_max_area_ratio:
        return None
    if params.pair_max_blob_width_factor > 0 and (
        max(ru.axis_minor_length, rv.axis_minor_length) > params.pair_max_blob_width_factor * width
    ):
        return None
    if min(au, av) < params.debris_area_fraction * med_piece:
        return None
    elong_u = ru.axis_major_length / max(ru.axis_minor_length, 1.0)
    elong_v = rv.axis_major_length / max(rv.axis_minor_length, 1.0)
    elongated = min(elong_u, elong_v) >= params.pair_min_elongation
    angle = np.degrees(_angle_diff(ru.orientation, rv.orientation))
    d = np.array(rv.centroid) - np.array(ru.centroid)
    mean_len = 0.5 * (ru.axis_major_length + rv.axis_major_length)
    theta = ru.orientation if au >= av else rv.orientation
    axis = np.array([np.cos(theta), np.sin(theta)])  # (row, col) direction of major axis
    along = abs(float(d @ axis))
    across = abs(float(d @ np.array([-axis[1], axis[0]])))
    side_by_side = (
        not (elongated and angle > params.pair_max_angle_deg)
        and along <= params.pair_max_axial_offset * mean_len
        and across <= 2.0 * width + gap
    )
    # twins: near-identical blobs (sisters are copies) close together, in any arrangement
    twins = twins_ok and max(au, av) / max(min(au, av), 1.0) <= params.pair_twin_area_ratio
    if not side_by_side and not twins:
        return None
    # actual gap between the two blobs
    y0 = min(ru.bbox[0], rv.bbox[0])
    x0 = min(ru.bbox[1], rv.bbox[1])
    y1 = max(ru.bbox[2], rv.bbox[2])
    x1 = max(ru.bbox[3], rv.bbox[3])
    local = pieces[y0:y1, x0:x1]
    gap_px = float(ndi.distance_transform_edt(local != ru.label)[local == rv.label].min())
    if gap_px > gap + 1:
        return None
    score = 0.5 * angle / params.pair_max_angle_deg if elongated else 0.5
    if not side_by_side:
        score += params.pair_twin_penalty
    score += (
        min(along / max(mean_len, 1.0), 1.0)
        + 3.0 * abs(np.log(au / av))
        + params.pair_gap_weight * gap_px / max(width, 1.0)
    )
    return score


def _split_by_levels(local, signal, med_obj, params, width=None):
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
                    _props(piece)["solidity"] >= params.split_min_solidity
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


def _empty(shape, polarity, params, signal) -> Segmentation:
    return Segmentation(
        labels=np.zeros(shape, np.int32),
        objects=pd.DataFrame(columns=OBJECT_COLUMNS),
        polarity=polarity,
        params=params,
        signal=signal,
    )


def _finish(label_img, objects, signal, polarity, params, shape, stats=None) -> Segmentation:
    from skimage.measure import regionprops

    if not objects:
        return _empty(shape, polarity, params, signal)
    info = {o["label"]: o for o in objects}
    rows = []
    for region in regionprops(label_img, intensity_image=signal):
        o = info[region.label]
        y0, x0, y1, x1 = region.bbox
        cy, cx = region.centroid
        rows.append(
            {
                "label": int(region.label),
                "status": o["status"],
                "reason": o["reason"],
                "area": int(region.area),
                "bbox_y0": int(y0),
                "bbox_x0": int(x0),
                "bbox_y1": int(y1),
                "bbox_x1": int(x1),
                "centroid_y": float(cy),
                "centroid_x": float(cx),
                "eccentricity": float(region.eccentricity),
                "solidity": float(region.solidity),
                "major_axis": float(region.axis_major_length),
                "minor_axis": float(region.axis_minor_length),
                "orientation": float(region.orientation),
                "mean_intensity": float(region.intensity_mean),
                "n_parts": int(o["n_parts"]),
            }
        )
    table = pd.DataFrame(rows, columns=OBJECT_COLUMNS)
    return Segmentation(
        labels=label_img,
        objects=table,
        polarity=polarity,
        params=params,
        signal=signal,
        stats=stats or {},
    )


def validate_params(params: SegmentationParams) -> None:
    if params.polarity not in (None, "dark_on_light", "bright_on_dark"):
        raise ChromosortError(f"unknown polarity {params.polarity!r}")
    if not params.smooth_sigma >= 0 or not params.max_noise >= 0:
        raise ChromosortError("smooth_sigma and max_noise must be >= 0")
    if params.crossing_score not in ("auto", "on", "off"):
        raise ChromosortError(
            f"crossing_score must be 'auto', 'on' or 'off', got {params.crossing_score!r}"
        )


# ----------------------------------------------------------------------------- hand edits
USER_REASON = "edited by user"


def measure_labels(labels: np.ndarray) -> pd.DataFrame:
    """Area, bbox (y1/x1 exclusive) and centroid of every label, in full-image pixels."""
    from skimage.measure import regionprops_table

    # (an empty label image gives the same columns, empty)
    table = pd.DataFrame(
        regionprops_table(np.asarray(labels), properties=("label", "area", "bbox", "centroid"))
    )
    return table.rename(
        columns={
            "bbox-0": "bbox_y0",
            "bbox-1": "bbox_x0",
            "bbox-2": "bbox_y1",
            "bbox-3": "bbox_x1",
            "centroid-0": "centroid_y",
            "centroid-1": "centroid_x",
        }
    )


def reconcile_objects(labels: np.ndarray, objects: pd.DataFrame) -> pd.DataFrame:
    """Make an objects table match its label image after hand edits (merge, split, paint, erase).

    Rows of deleted labels are dropped; new labels become kept chromosomes with reason
    "edited by user"; area/bbox/centroid are re-measured for every label whose pixels changed.
    The status a user set is kept.
    """
    labels = np.asarray(labels)
    measured = measure_labels(labels)
    old = objects.copy() if len(objects) else pd.DataFrame({"label": []})
    if "label" not in old:
        old["label"] = np.arange(1, len(old) + 1)
    old["label"] = old["label"].astype(int)
    old = old.drop_duplicates("label").set_index("label")
    measured = measured.set_index("label")
    rows = []
    for label, meas in measured.iterrows():
        if label in old.index:
            row = old.loc[label].to_dict()
            changed = "area" in row and not np.isclose(float(row.get("area", -1)), meas["area"])
            if changed and row.get("reason") != USER_REASON:
                row["reason"] = USER_REASON
        else:
            row = {"status": "chromosome", "reason": USER_REASON}
        row.update(meas.to_dict())
        row["label"] = int(label)
        rows.append(row)
    columns = ["label"] + [c for c in old.columns if c not in ("label", "index")]
    for extra in ("status", "reason", *measured.columns):
        if extra not in columns:
            columns.append(extra)
    table = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    if len(table):
        table["status"] = table["status"].fillna("chromosome")
        table["reason"] = table["reason"].fillna("")
    return table.drop(columns=["index"], errors="ignore")
