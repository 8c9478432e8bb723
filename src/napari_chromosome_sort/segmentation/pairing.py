"""Sister-chromatid pairing: two blobs lying side by side become one chromosome (type C)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_chromosome_sort.segmentation.shapes import Region, angle_diff, region_measures


@dataclass
class PairLimits:
    """What the spread allows a sister-chromatid pair to be (None = no limit yet)."""

    max_union: float | None = None  # area of the pair, px
    max_blob_width: float | None = None  # minor axis of each blob, px (a chromatid's width)
    twin_max_half_width: float | None = None  # near-identical blobs pair if this thin
    piece_half_width: np.ndarray | None = None  # largest inscribed radius of each piece


def median_object_area(pieces, group, params) -> float:
    """Median area of the objects the grouping makes, leaving out debris-sized ones."""
    grouped = group[pieces]
    grouped[pieces == 0] = 0
    g_areas = np.bincount(grouped.ravel())
    g_areas = g_areas[1:][g_areas[1:] > 0]
    if g_areas.size == 0:
        return 1.0
    med = float(np.median(g_areas))
    plausible = g_areas[g_areas >= params.debris_area_fraction * med]
    return float(np.median(plausible)) if plausible.size else med


def median_object_width(pieces, group, med_obj, params) -> float:
    """Median minor axis of the objects the grouping makes, leaving out debris-sized ones: the
    width of a whole chromosome of the spread (a pair of chromatids counts as the chromosome
    it is)."""
    grouped = group[pieces]
    grouped[pieces == 0] = 0
    widths = [
        r.axis_minor_length
        for r in region_measures(grouped).values()
        if r.area >= params.debris_area_fraction * med_obj
    ]
    return float(np.median(widths)) if widths else float("inf")


@dataclass
class Neighbours:
    """Pieces of one label image lying within a gap of each other, with their region measures:
    computed once and shared by every pairing pass over the same pieces."""

    regions: dict[int, Region]
    pairs: list[tuple[int, int]]  # (u, v), u < v: pieces within the gap of each other
    gap: float  # px
    gaps: dict[tuple[int, int], float] = field(default_factory=dict)  # measured on demand

    def gap_between(self, pieces: np.ndarray, ru, rv) -> float:
        """Pixels between two pieces (0 where they touch)."""
        key = (ru.label, rv.label)
        if key not in self.gaps:
            self.gaps[key] = _gap_px(pieces, ru, rv)
        return self.gaps[key]


def neighbours(pieces: np.ndarray, width: float, params) -> Neighbours:
    """The pairs of pieces close enough (``pair_max_gap_factor`` x ``width``) to be sisters."""
    from skimage.segmentation import expand_labels

    gap = max(1.0, params.pair_max_gap_factor * width)
    expanded = expand_labels(pieces, distance=gap / 2.0 + 0.5)
    n = int(expanded.max()) + 1
    keys = []
    for a, b in ((expanded[:, :-1], expanded[:, 1:]), (expanded[:-1, :], expanded[1:, :])):
        sel = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[sel], b[sel]).astype(np.int64), np.maximum(a[sel], b[sel])
        keys.append(lo * n + hi)
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    pairs = [(int(k // n), int(k % n)) for k in unique]
    return Neighbours(region_measures(pieces), pairs, gap)


def group_pairs(
    pieces, n_pieces, width, med_piece, params, limits=None, near: Neighbours | None = None
) -> np.ndarray:
    """piece id -> representative id after grouping sister-chromatid pairs (mutual best).
    ``near``: the pieces' :func:`neighbours`, when several passes pair the same pieces."""
    group = np.arange(n_pieces + 1)
    if not params.pair_chromatids or n_pieces < 2:
        return group
    near = near or neighbours(pieces, width, params)
    region_of = near.regions
    limits = limits or PairLimits()
    candidates = []
    for u, v in near.pairs:
        if u not in region_of or v not in region_of:
            continue
        ru, rv = region_of[u], region_of[v]
        if limits.max_union is not None and ru.area + rv.area > limits.max_union:
            continue
        twins_ok = limits.twin_max_half_width is not None and (
            max(limits.piece_half_width[u - 1], limits.piece_half_width[v - 1])
            <= limits.twin_max_half_width
        )
        twins = twins_ok and _area_ratio(ru, rv) <= params.pair_twin_area_ratio
        if (
            not twins
            and limits.max_blob_width is not None
            and max(ru.axis_minor_length, rv.axis_minor_length) > limits.max_blob_width
        ):
            continue  # full width: whole chromosomes side by side, not sister chromatids
        score = _pair_score(ru, rv, pieces, width, near, med_piece, params, twins_ok)
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


def _area_ratio(ru, rv) -> float:
    """Larger over smaller area of two regions."""
    return max(ru.area, rv.area) / max(min(ru.area, rv.area), 1.0)


def _pair_score(ru, rv, pieces, width, near, med_piece, params, twins_ok=False) -> float | None:
    """Score (lower = better) for two blobs being sister chromatids of one chromosome, or None."""
    au, av = float(ru.area), float(rv.area)
    gap = near.gap
    if max(au, av) / max(min(au, av), 1.0) > params.pair_max_area_ratio:
        return None
    if min(au, av) < params.debris_area_fraction * med_piece:
        return None
    elong_u = ru.axis_major_length / max(ru.axis_minor_length, 1.0)
    elong_v = rv.axis_major_length / max(rv.axis_minor_length, 1.0)
    elongated = min(elong_u, elong_v) >= params.pair_min_elongation
    angle = np.degrees(angle_diff(ru.orientation, rv.orientation))
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
    gap_px = near.gap_between(pieces, ru, rv)
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


def _gap_px(pieces: np.ndarray, ru, rv) -> float:
    """Pixels between two regions of ``pieces`` (distance from ``ru`` to the nearest of ``rv``)."""
    from scipy import ndimage as ndi

    y0, x0 = min(ru.bbox[0], rv.bbox[0]), min(ru.bbox[1], rv.bbox[1])
    y1, x1 = max(ru.bbox[2], rv.bbox[2]), max(ru.bbox[3], rv.bbox[3])
    local = pieces[y0:y1, x0:x1]
    return float(ndi.distance_transform_edt(local != ru.label)[local == rv.label].min())
