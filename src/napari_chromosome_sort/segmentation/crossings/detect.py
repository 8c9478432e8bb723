"""Crossing chromosomes, kept as one piece or cut through their overlap -> ``cluster``, or
resolved into their two chromosomes -> ``crossing-resolved``."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.segmentation.crossings.resolve import resolve_x
from napari_chromosome_sort.segmentation.learned.crossing_score import (
    FEATURES,
    crossing_candidates,
    load_crossing_model,
    shape_measures,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams, switched_on
from napari_chromosome_sort.segmentation.shapes import (
    neighbour_pairs,
    pair_sides,
    shape_props,
    skeleton_branched,
)


def finish_crossings(label_img, objects, corrected, med_obj, width, params, polarity) -> dict:
    """The crossing steps of :func:`.pipeline.segment_spread` in order: the rules
    (:func:`flag_crossings`), the learned score where it applies, then the resolution of X-shaped
    crossings (:func:`resolve_crossings`). Returns the second halves' full masks
    (:attr:`.Segmentation.crossing_masks`)."""
    if not (params.detect_crossings and objects):
        return {}
    flag_crossings(label_img, objects, corrected, med_obj, width, params)
    if crossing_score_on(params, polarity):
        flag_by_crossing_score(label_img, objects, corrected, med_obj, width, params)
    if not params.resolve_crossings:
        return {}
    candidates = resolution_candidates(objects)
    if polarity != "bright_on_dark":
        # bright-field cohesion spreads resolve sister chromatids: a kept open type B/C
        # chromosome is an X too, so only objects already set aside are resolved there
        candidates = [o for o in candidates if o["status"] != "chromosome"]
    return resolve_crossings(label_img, objects, candidates, med_obj, width, params)


def resolution_candidates(objects) -> list[dict]:
    """Single pieces kept or set aside as ``cluster``, except the pieces of a crossing the split
    cut apart (:func:`flag_bright_contacts`): each holds only part of both chromosomes."""
    return [
        o
        for o in objects
        if o["n_parts"] == 1
        and o["status"] in ("chromosome", "cluster")
        and not o["reason"].startswith("meets object")
    ]


def resolve_crossings(label_img, objects, candidates, med_obj, width, params) -> dict:
    """Each candidate whose outline is an X of two straight chromosomes
    (:func:`.crossing_resolve.resolve_x`) becomes two ``crossing-resolved`` objects: the first
    keeps its label and the shared crossing pixels, the second gets a new label for its own
    pixels and its full mask in the returned ``{label: (y0, x0, mask)}``. Objects set aside as
    ``cluster`` are tried from ``crossing_min_area_factor`` x the median object as an X or a T;
    kept ones from ``resolve_kept_min_area`` x, and only as an X (0 = kept objects are never
    tried)."""
    from scipy import ndimage as ndi

    slices = ndi.find_objects(label_img)
    extra = {}
    for o in candidates:
        sl = slices[o["label"] - 1] if o["label"] <= len(slices) else None
        if sl is None:
            continue
        local = label_img[sl] == o["label"]
        rel = local.sum() / max(med_obj, 1.0)
        kept = o["status"] == "chromosome"
        gate = params.resolve_kept_min_area if kept else params.crossing_min_area_factor
        if gate <= 0 or rel < gate:
            continue
        found = resolve_x(
            local,
            width,
            params.resolve_min_arm,
            params.resolve_max_bend,
            allow_t=params.resolve_t and not kept,
        )
        if found is None:
            continue
        halves = (found.first, found.second)
        if min(h.sum() for h in halves) < params.split_min_piece_factor * med_obj:
            continue
        new = len(objects) + 1
        shape = "crossing in an X" if found.n_arms == 4 else "crossing in a T"
        why = (
            f"one of two chromosomes {shape} ({rel:.1f}x the median object, each bent at "
            f"most {found.bend_deg:.0f} deg)"
        )
        extra[new] = found.write(label_img, objects, o, sl, new, why, "crossing")
    return extra


def flag_crossings(label_img, objects, corrected, med_obj, width, params) -> None:
    """Kept single pieces that look like two crossing chromosomes become ``cluster``: larger
    than the median chromosome, not convex, a branched skeleton, and a bright plateau (the
    double-DNA overlap) of about one chromatid width squared; or meeting another kept object
    along a cut brighter than both (:func:`flag_bright_contacts`). Sister-chromatid pairs
    grouped from separate blobs are never crossings."""
    from scipy import ndimage as ndi

    candidates = [o for o in objects if o["status"] == "chromosome" and o["n_parts"] == 1]
    if not candidates:
        return
    smooth = ndi.gaussian_filter(corrected, max(1.0, width / 4.0))
    if params.crossing_contact_brightness > 0:
        flag_bright_contacts(label_img, objects, smooth, width, params)
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
        solidity = shape_props(local)["solidity"]
        if solidity >= params.crossing_max_solidity:
            continue
        if not skeleton_branched(local, params.crossing_prune_factor * width):
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


def crossing_score_on(params: SegmentationParams, polarity: str) -> bool:
    """Whether the learned crossing score applies (by ``crossing_score`` and the polarity)."""
    # bright-field (Giemsa) cohesion spreads resolve sister chromatids: their open X-shaped
    # chromosomes (types B/C) look like crossings to a score trained on DAPI spreads
    return switched_on(params.crossing_score, polarity)


def flag_by_crossing_score(label_img, objects, corrected, med_obj, width, params) -> None:
    """Kept single pieces of at least ``min_rel_area`` x the median object whose learned crossing
    score, relative to the spread's typical kept object, is above the threshold -> ``cluster``
    (:meth:`.crossing_model.CrossingModel.flags`)."""
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


def flag_bright_contacts(label_img, objects, smooth, width, params) -> None:
    """A crossing that the split cut through its overlap leaves kept pieces that meet along a
    cut brighter than both of them (the double-DNA overlap); touching neighbours meet in a
    valley. Single pieces meeting another kept object along such a cut -> ``cluster``."""
    from scipy import ndimage as ndi

    n_labels = int(label_img.max()) + 1
    kept = np.zeros(n_labels, bool)
    for o in objects:
        kept[o["label"]] = o["status"] == "chromosome"
    here, other, values = [], [], []
    for axis, sel in neighbour_pairs(label_img, kept):
        a, b = pair_sides(label_img, axis)
        sa, sb = pair_sides(smooth, axis)
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
