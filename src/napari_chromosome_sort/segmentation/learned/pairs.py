"""Whether two neighbouring parts are one chromosome, learned from truth boxes.

A chromosome whose sister chromatids have come apart is two parts: each about half a
chromosome's width, near-identical copies of each other (same length, area, brightness), lying
side by side or splayed from a shared centromere, close together. The rules pair such parts
(:mod:`.pairing`) by fixed limits; where a spread's chromatids are wider, more splayed or cut
from a touching group, they stay two objects, and two thin chromosomes side by side may be paired
as one.

Here every kept object is cut into its parts (an object the rules grouped from several blobs
into those blobs, any other object is one part), and every two parts of kept objects that lie
within the rules' pairing gap form a candidate pair (:func:`propose_pairs`). Its features
(:data:`PAIR_FEATURES`) are relative to the spread (widths over its chromatid width, areas over
its typical chromosome) and describe what sisters are: each part's inscribed half-width, how
alike the two are (area, length, brightness), the gap between them, the angle between their
axes, how far one is shifted along the other and how convex their union is. Target: the union's
box matches a truth box (IoU >= 0.5) better than either part's box does.

:func:`regroup` turns pair probabilities into a grouping: a pair of the rules stays together
when its probability is >= 0.5 and is cut apart otherwise; the parts then alone are joined,
most probable first, to one neighbouring free part each when that pair's probability is >= 0.5.
A pair classifier regroups only spreads of the kind it learned from: spreads on which the rules
grouped sister chromatids (:func:`shows_sisters`) when its training spreads showed them, else
spreads on which they grouped none. Learned on spreads of separated chromatids, it joins
half-width twins; on a spread of closed chromosomes every part is a whole chromosome and two
small ones side by side look like the sisters of one. Learned on spreads of closed chromosomes
(DAPI, say), it joins the pieces of one chromosome cut apart along its length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.params import OBJECT_COLUMNS
from napari_chromosome_sort.segmentation.result import Segmentation
from napari_chromosome_sort.segmentation.truth import BOX_COLUMNS, box_iou, matched_objects

PAIR_FEATURES = (
    "wide_half_width",
    "narrow_half_width",
    "log_area_ratio",
    "log_length_ratio",
    "log_intensity_ratio",
    "log_rel_union_area",
    "gap",
    "angle",
    "axial_offset",
    "union_solidity",
)
_PART_COLUMNS = [
    "part",
    "label",
    "area",
    *BOX_COLUMNS,
    "centroid_y",
    "centroid_x",
    "orientation",
    "major_axis",
    "minor_axis",
    "eccentricity",
    "solidity",
    "half_width",
    "mean_intensity",
]


@dataclass
class PairOptions:
    """The parts of a segmentation's kept objects and their candidate pairs.

    ``parts``: one row per part (``part`` id, owner ``label``, measures); ``pairs``: one row per
    candidate pair (parts ``a`` < ``b``, ``same_object``, union box, :data:`PAIR_FEATURES`);
    ``part_images``: for each object of several parts, its window and the part ids in it."""

    parts: pd.DataFrame
    pairs: pd.DataFrame
    part_images: dict = field(default_factory=dict)

    def features(self) -> np.ndarray:
        """The (n pairs, len(PAIR_FEATURES)) feature matrix."""
        return self.pairs[list(PAIR_FEATURES)].to_numpy(float).reshape(-1, len(PAIR_FEATURES))


def _empty_options() -> PairOptions:
    pairs = pd.DataFrame(columns=["a", "b", "same_object", *BOX_COLUMNS, *PAIR_FEATURES])
    return PairOptions(pd.DataFrame(columns=_PART_COLUMNS), pairs)


def _object_parts(mask: np.ndarray, signal: np.ndarray, level: float, n_parts: int) -> np.ndarray:
    """The object ``mask`` cut into its ``n_parts`` blobs above ``level`` (each pixel to the
    nearest blob); all ones when fewer blobs are found."""
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels

    cores, n = ndi.label(mask & (signal >= level))
    if n < 2:
        return mask.astype(np.int32)
    sizes = np.bincount(cores.ravel())[1:]
    keep = np.argsort(sizes)[::-1][:n_parts] + 1
    seeds = np.where(np.isin(cores, keep), cores, 0)
    lookup = np.zeros(n + 1, np.int32)
    lookup[keep] = np.arange(1, len(keep) + 1)
    grown = expand_labels(lookup[seeds], distance=float(max(mask.shape)))
    return np.where(mask, grown, 0).astype(np.int32)


def _part_rows(part_img: np.ndarray, owner: dict, signal: np.ndarray) -> pd.DataFrame:
    """One row per part of a full-size part image (``owner``: part id -> object label)."""
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    rows = []
    for r in regionprops(part_img, intensity_image=signal):
        y0, x0, y1, x1 = r.bbox
        local = np.pad(r.image, 1)
        rows.append(
            {
                "part": int(r.label),
                "label": int(owner[r.label]),
                "area": int(r.area),
                "bbox_y0": y0,
                "bbox_x0": x0,
                "bbox_y1": y1,
                "bbox_x1": x1,
                "centroid_y": r.centroid[0],
                "centroid_x": r.centroid[1],
                "orientation": float(r.orientation),
                "major_axis": float(r.axis_major_length),
                "minor_axis": float(r.axis_minor_length),
                "eccentricity": float(r.eccentricity),
                "solidity": float(r.solidity),
                "half_width": float(ndi.distance_transform_edt(local).max()),
                "mean_intensity": float(r.intensity_mean),
            }
        )
    return pd.DataFrame(rows, columns=_PART_COLUMNS)


def _neighbour_pairs(part_img: np.ndarray, gap: float) -> list[tuple[int, int]]:
    """Pairs of parts (a < b) whose outlines are within ``gap`` pixels."""
    from skimage.segmentation import expand_labels

    expanded = expand_labels(part_img, distance=gap / 2.0 + 0.5)
    n = int(expanded.max()) + 1
    keys = []
    for a, b in ((expanded[:, :-1], expanded[:, 1:]), (expanded[:-1, :], expanded[1:, :])):
        sel = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[sel], b[sel]).astype(np.int64)
        keys.append(lo * n + np.maximum(a[sel], b[sel]))
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    return [(int(k // n), int(k % n)) for k in unique]


def _angle(a: float, b: float) -> float:
    """Angle between two axis orientations, in [0, pi/2]."""
    d = abs(a - b) % np.pi
    return float(min(d, np.pi - d))


def pair_features(
    pa: pd.Series, pb: pd.Series, union: np.ndarray, gap_px: float, width: float, typical: float
) -> np.ndarray:
    """The :data:`PAIR_FEATURES` of parts ``pa`` and ``pb`` (rows of :class:`PairOptions`.parts):
    ``union`` is the mask of the two parts, ``gap_px`` the gap between them, ``width`` the
    spread's chromatid width and ``typical`` its typical chromosome area."""
    from skimage.measure import regionprops

    width = max(width, 1.0)
    half = sorted([pa["half_width"], pb["half_width"]])
    axis_of = pa if pa["area"] >= pb["area"] else pb
    theta = axis_of["orientation"]
    axis = np.array([np.cos(theta), np.sin(theta)])
    shift = np.array(
        [pb["centroid_y"] - pa["centroid_y"], pb["centroid_x"] - pa["centroid_x"]], float
    )
    mean_length = max(0.5 * (pa["major_axis"] + pb["major_axis"]), 1.0)
    solidity = regionprops(union.astype(np.uint8))[0].solidity
    return np.array(
        [
            2 * half[1] / width,
            2 * half[0] / width,
            abs(np.log(pa["area"] / pb["area"])),
            abs(np.log(max(pa["major_axis"], 1.0) / max(pb["major_axis"], 1.0))),
            abs(np.log(max(pa["mean_intensity"], 1e-6) / max(pb["mean_intensity"], 1e-6))),
            np.log((pa["area"] + pb["area"]) / typical),
            gap_px / width,
            _angle(pa["orientation"], pb["orientation"]) / (np.pi / 2),
            abs(float(shift @ axis)) / mean_length,
            solidity,
        ],
        float,
    )


def propose_pairs(seg: Segmentation) -> PairOptions:
    """The parts of ``seg``'s kept objects and their candidate pairs (module docstring); needs
    the segmentation's signal."""
    from scipy import ndimage as ndi

    objects = seg.objects
    if seg.signal is None or len(objects) == 0:
        return _empty_options()
    kept = objects[objects["status"] == "chromosome"]
    if len(kept) < 2:
        return _empty_options()
    width = float(seg.stats.get("width") or np.median(kept["minor_axis"]) / 2)
    level = float(seg.stats.get("threshold", np.inf))
    windows = ndi.find_objects(seg.labels)
    part_img = np.zeros(seg.labels.shape, np.int32)
    owner, part_images, next_part = {}, {}, 1
    for row in kept.itertuples(index=False):
        window = windows[int(row.label) - 1]
        if window is None:
            continue
        mask = seg.labels[window] == row.label
        local = (
            _object_parts(mask, seg.signal[window], level, int(row.n_parts))
            if row.n_parts > 1
            else mask.astype(np.int32)
        )
        n = int(local.max())
        ids = np.arange(next_part, next_part + n)
        part_img[window][mask] = ids[local[mask] - 1]
        owner.update({int(i): int(row.label) for i in ids})
        if n > 1:
            part_images[int(row.label)] = (window, np.where(mask, ids[local - 1], 0))
        next_part += n
    parts = _part_rows(part_img, owner, seg.signal).set_index("part", drop=False)
    typical = max(float(np.median(kept["area"])), 1.0)
    gap = max(1.0, seg.params.pair_max_gap_factor * width)
    slices = ndi.find_objects(part_img)
    rows = []
    for a, b in _neighbour_pairs(part_img, gap):
        pa, pb = parts.loc[a], parts.loc[b]
        sa, sb = slices[a - 1], slices[b - 1]
        window = tuple(
            slice(min(u.start, v.start), max(u.stop, v.stop)) for u, v in zip(sa, sb, strict=True)
        )
        local = part_img[window]
        union = (local == a) | (local == b)
        gap_px = float(ndi.distance_transform_edt(local != a)[local == b].min()) - 1.0
        x = pair_features(pa, pb, union, max(gap_px, 0.0), width, typical)
        rows.append(
            {
                "a": a,
                "b": b,
                "same_object": bool(pa["label"] == pb["label"]),
                "bbox_y0": window[0].start,
                "bbox_x0": window[1].start,
                "bbox_y1": window[0].stop,
                "bbox_x1": window[1].stop,
                **dict(zip(PAIR_FEATURES, x, strict=True)),
            }
        )
    pairs = pd.DataFrame(rows, columns=_empty_options().pairs.columns)
    return PairOptions(parts.reset_index(drop=True), pairs, part_images)


def pair_truth(options: PairOptions, boxes: np.ndarray) -> np.ndarray:
    """Per candidate pair: does the union's box match a truth box (IoU >= 0.5) better than
    either part's box does?"""
    if len(options.pairs) == 0 or len(boxes) == 0:
        return np.zeros(len(options.pairs), bool)
    parts = options.parts.set_index("part")
    union_iou = box_iou(options.pairs[BOX_COLUMNS].to_numpy(float), boxes)
    a_iou = box_iou(parts.loc[options.pairs["a"], BOX_COLUMNS].to_numpy(float), boxes)
    b_iou = box_iou(parts.loc[options.pairs["b"], BOX_COLUMNS].to_numpy(float), boxes)
    return ((union_iou >= 0.5) & (union_iou > np.maximum(a_iou, b_iou))).any(axis=1)


def rules_decisions(options: PairOptions) -> np.ndarray:
    """The rules' decision on each candidate pair: 1 when the parts are one object, else 0."""
    return options.pairs["same_object"].to_numpy(bool).astype(float)


#: A spread on which the rules grouped fewer sister-chromatid pairs than this is not one of
#: separated chromatids: its parts are whole chromosomes and the pair classifier leaves it.
MIN_SISTER_PAIRS = 2


def shows_sisters(options: PairOptions) -> bool:
    """Whether the rules grouped at least :data:`MIN_SISTER_PAIRS` pairs of parts on the spread:
    a spread of separated sister chromatids (module docstring)."""
    return int(options.pairs["same_object"].astype(bool).sum()) >= MIN_SISTER_PAIRS


def regroup(options: PairOptions, p: np.ndarray, threshold: float = 0.5) -> list[list[int]]:
    """The groups of parts (each a list of part ids) of the kept objects under pair
    probabilities ``p`` (module docstring). Objects of more than two parts stay as they are."""
    pairs = options.pairs
    parts = options.parts
    n_parts_of = parts.groupby("label")["part"].apply(list).to_dict()
    same = pairs["same_object"].to_numpy(bool)
    cut = set()
    for i in np.flatnonzero(same & (p < threshold)):
        label = int(parts.loc[parts["part"] == pairs["a"].iloc[i], "label"].iloc[0])
        if len(n_parts_of[label]) == 2:
            cut.add(label)
    owner = dict(zip(parts["part"], parts["label"], strict=True))
    free = {part for part, label in owner.items() if len(n_parts_of[label]) == 1 or label in cut}
    groups = [members for label, members in n_parts_of.items() if label not in cut]
    groups = [g for g in groups if not (len(g) == 1 and g[0] in free)]
    joined = set()
    for i in np.argsort(-p, kind="stable"):
        a, b = int(pairs["a"].iloc[i]), int(pairs["b"].iloc[i])
        if p[i] < threshold or same[i] and owner[a] not in cut:
            continue
        if a in free and b in free and not {a, b} & joined:
            groups.append([a, b])
            joined.update((a, b))
    groups += [[part] for part in sorted(free - joined)]
    return groups


def group_boxes(options: PairOptions, groups: list[list[int]]) -> np.ndarray:
    """The (n, 4) boxes of groups of parts."""
    boxes = options.parts.set_index("part")[BOX_COLUMNS]
    out = [
        [*boxes.loc[g, BOX_COLUMNS[:2]].min().to_numpy(), *boxes.loc[g, BOX_COLUMNS[2:]].max()]
        for g in groups
    ]
    return np.asarray(out, float).reshape(-1, 4)


def boxes_found(
    options: PairOptions, groups: list[list[int]], others: np.ndarray, truth: np.ndarray
) -> int:
    """Truth boxes matched one-to-one by the groups' boxes and the ``others`` (boxes of kept
    objects that are not parts: none by default)."""
    boxes = np.vstack([group_boxes(options, groups), others.reshape(-1, 4)])
    return int(matched_objects(truth, pd.DataFrame(boxes, columns=BOX_COLUMNS)).sum())


def regrouped_objects(
    seg: Segmentation, options: PairOptions, groups: list[list[int]], reasons: dict
) -> Segmentation:
    """``seg`` with its kept objects regrouped into ``groups`` (only the groups that differ
    from the objects change); ``reasons``: a group (tuple of part ids) -> its reason."""
    from skimage.measure import regionprops

    parts = options.parts.set_index("part")
    members = parts.groupby("label").groups
    changed = [g for g in groups if set(g) != set(members[parts.loc[g[0], "label"]])]
    if not changed:
        return seg
    labels = seg.labels.copy()
    objects = seg.objects.set_index("label", drop=False)
    next_label = int(labels.max()) + 1
    removed, added = set(), []
    for group in changed:
        owners = sorted({int(parts.loc[g, "label"]) for g in group})
        removed.update(owners)
        new = next_label
        next_label += 1
        for part in group:
            label = int(parts.loc[part, "label"])
            if label in options.part_images:
                window, local = options.part_images[label]
                labels[window][local == part] = new
            else:
                labels[labels == label] = new
        rows = parts.loc[group]
        y0, x0 = rows[BOX_COLUMNS[:2]].min().astype(int)
        y1, x1 = rows[BOX_COLUMNS[2:]].max().astype(int)
        region = regionprops((labels[y0:y1, x0:x1] == new).astype(np.uint8))[0]
        area = int(rows["area"].sum())
        added.append(
            {
                **objects.loc[owners[0]].to_dict(),
                "label": new,
                "status": "chromosome",
                "reason": reasons.get(tuple(group), ""),
                "area": area,
                "bbox_y0": y0,
                "bbox_x0": x0,
                "bbox_y1": y1,
                "bbox_x1": x1,
                "centroid_y": float((rows["centroid_y"] * rows["area"]).sum() / area),
                "centroid_x": float((rows["centroid_x"] * rows["area"]).sum() / area),
                "eccentricity": float(region.eccentricity),
                "solidity": float(region.solidity),
                "major_axis": float(region.axis_major_length),
                "minor_axis": float(region.axis_minor_length),
                "orientation": float(region.orientation),
                "mean_intensity": float((rows["mean_intensity"] * rows["area"]).sum() / area),
                "n_parts": len(group),
            }
        )
    kept = seg.objects[~seg.objects["label"].isin(removed)]
    new_rows = pd.DataFrame(added)[[c for c in seg.objects.columns if c in added[0]]]
    objects = pd.concat([kept, new_rows], ignore_index=True)
    missing = [c for c in OBJECT_COLUMNS if c not in objects.columns]
    if missing:
        objects = objects.reindex(columns=[*objects.columns, *missing])
    return Segmentation(
        labels=labels,
        objects=objects.reset_index(drop=True),
        polarity=seg.polarity,
        params=seg.params,
        signal=seg.signal,
        stats=seg.stats,
    )


def restrict(options: PairOptions, labels) -> PairOptions:
    """The parts of the objects ``labels`` only, and the pairs among them."""
    keep = set(int(v) for v in labels)
    parts = options.parts[options.parts["label"].isin(keep)]
    ids = set(parts["part"])
    pairs = options.pairs[options.pairs["a"].isin(ids) & options.pairs["b"].isin(ids)]
    images = {k: v for k, v in options.part_images.items() if k in keep}
    return PairOptions(parts.reset_index(drop=True), pairs.reset_index(drop=True), images)


#: Folds over the pairs when the pair classifier is checked on a single training spread.
PAIR_FOLDS = 5


def pair_folds(truth: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """The fold of each pair for :func:`pair_gain`: its spread, or (one spread) each of
    :data:`PAIR_FOLDS` folds with the right and wrong pairs spread evenly over them."""
    if len(np.unique(spread)) > 1:
        return spread
    folds = np.empty(len(truth), int)
    for kind in (False, True):
        folds[truth == kind] = np.arange((truth == kind).sum()) % PAIR_FOLDS
    return folds


def pair_gain(
    options: list[PairOptions],
    boxes: list[np.ndarray],
    fit,
    min_right: int,
    sisters: bool = True,
) -> int:
    """Truth boxes gained on the training spreads by regrouping their parts with a pair
    classifier, each pair decided by a classifier learned from the pairs of the other spreads
    (one spread: of the other folds) and the rest as the rules have them. ``fit(x, y)`` returns
    a function of features -> probabilities; a fold whose others hold fewer than ``min_right``
    right pairs decides nothing. Only spreads whose :func:`shows_sisters` is ``sisters`` are
    regrouped."""
    x = np.vstack([o.features() for o in options]) if options else np.zeros((0, 0))
    y = np.concatenate([pair_truth(o, b) for o, b in zip(options, boxes, strict=True)])
    spread = np.concatenate([np.full(len(o.pairs), i) for i, o in enumerate(options)])
    folds = pair_folds(y, spread)
    rules = [rules_decisions(o) for o in options]
    none = np.zeros((0, 4))
    base = [
        boxes_found(o, regroup(o, r), none, b)
        for o, r, b in zip(options, rules, boxes, strict=True)
    ]
    total = 0
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        if y[train].sum() < min_right:
            continue
        p_test = fit(x[train], y[train])(x[test])
        for i, o in enumerate(options):
            here = test[spread == i]
            if not here.any() or shows_sisters(o) != sisters:
                continue
            p = rules[i].copy()
            p[here] = p_test[spread[test] == i]
            total += boxes_found(o, regroup(o, p), none, boxes[i]) - base[i]
    return total
