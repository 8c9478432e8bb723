"""Applying the learned segmentation model (:mod:`.learned`): statuses, splits and regrouped
parts set by the model on a spread segmented with its settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.learned.candidates import Candidates, propose_splits
from napari_chromosome_sort.segmentation.learned.features import _typical, _typical_area
from napari_chromosome_sort.segmentation.learned.model import SegmentationModel
from napari_chromosome_sort.segmentation.learned.pairs import (
    propose_pairs,
    regroup,
    regrouped_objects,
    restrict,
    shows_sisters,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams
from napari_chromosome_sort.segmentation.pipeline import segment_spread
from napari_chromosome_sort.segmentation.result import Segmentation


def _chosen_splits(c: Candidates, model: SegmentationModel) -> list[tuple]:
    """(option, piece probabilities) of the splits the model takes (module docstring)."""
    if not model.splits or not c.splits:
        return []
    objects = c.seg.objects.set_index("label", drop=False)
    typical = _typical_area(c.seg.objects)
    chosen = []
    for option in c.splits:
        p_split = model.split_probability(objects.loc[option.label], option.objects, typical)
        if p_split < 0.5:
            continue
        p_pieces = model.probabilities(option.objects, c.seg.objects)
        if p_pieces.min() >= model.threshold:
            chosen.append((option, p_pieces))
    return chosen


def apply_model(seg: Segmentation | Candidates, model: SegmentationModel) -> Segmentation:
    """The segmentation with statuses, reasons and splits set by the model (module docstring);
    a bare ``Segmentation`` needs its signal to offer splits."""
    c = seg if isinstance(seg, Candidates) else Candidates(seg, propose_splits(seg))
    objects = c.seg.objects.copy()
    if len(objects) == 0:
        return c.seg
    p = model.probabilities(objects)
    prior = objects["status"].astype(str).to_numpy()
    judged = np.isin(prior, model.statuses) & model.classify
    was_kept = prior == "chromosome"
    keep = np.where(judged, p >= model.threshold, was_kept)
    small = (
        objects["area"] < _typical(objects["area"], objects["status"] == "chromosome")
    ).to_numpy()
    rejected = np.where(small, "debris", "cluster")
    status = np.where(keep, "chromosome", np.where(was_kept, rejected, prior))
    reason = [
        (f"learned: p={pi:.2f}" if k else f"{r}; learned: p={pi:.2f}")
        if j
        else f"{r}; learned: p={pi:.2f}, not judged ({_not_judged(model, s)})"
        for pi, k, j, s, r in zip(
            p, keep, judged, prior, objects["reason"].astype(str), strict=True
        )
    ]
    objects["status"] = status
    objects["reason"] = reason
    chosen = _chosen_splits(c, model)
    if not chosen:
        return _apply_pairs(replace(c.seg, objects=objects), c, model)
    labels = c.seg.labels.copy()
    next_label = int(labels.max()) + 1
    added = []
    for option, p_pieces in chosen:
        rows = option.objects.copy()
        new = np.arange(next_label, next_label + len(rows))
        lookup = np.zeros(int(option.pieces.max()) + 1, np.int32)
        lookup[rows["label"].to_numpy()] = new
        window = labels[option.window]
        window[option.pieces > 0] = lookup[option.pieces[option.pieces > 0]]
        rows["label"] = new
        rows["reason"] = [
            f"split from a touching group ({len(rows)} pieces); learned: p={pi:.2f}"
            for pi in p_pieces
        ]
        added.append(rows)
        next_label += len(rows)
    split_labels = {option.label for option, _ in chosen}
    objects = pd.concat([objects[~objects["label"].isin(split_labels)], *added], ignore_index=True)
    seg = replace(c.seg, labels=labels, objects=objects.reset_index(drop=True))
    return _apply_pairs(seg, c, model, untouched=set(split_labels))


def _apply_pairs(
    seg: Segmentation, c: Candidates, model: SegmentationModel, untouched: set = frozenset()
) -> Segmentation:
    """``seg`` with the parts of its kept objects regrouped by the model's pair classifier
    (:func:`.pairs.regroup`); objects split by the model (``untouched``) stay out."""
    if not model.pairs:
        return seg
    options = c.pairs if c.pairs is not None else propose_pairs(c.seg)
    if shows_sisters(options) != model.pair_sisters:
        return seg
    kept = seg.objects.loc[seg.objects["status"] == "chromosome", "label"]
    options = restrict(options, set(kept) - set(untouched))
    if len(options.pairs) == 0:
        return seg
    p = model.pair_probabilities(options.features())
    groups = regroup(options, p)
    pairs = options.pairs
    p_of = {(int(a), int(b)): pi for a, b, pi in zip(pairs["a"], pairs["b"], p, strict=True)}
    same = _same(pairs)
    cut_p = {k: v for (a, b), v in p_of.items() if (a, b) in same for k in (a, b)}
    reasons = {}
    for g in groups:
        if len(g) > 1:
            reasons[tuple(g)] = (
                f"{len(g)} parts joined as one chromosome; "
                f"learned: p={p_of.get(tuple(sorted(g)), 1.0):.2f}"
            )
        else:
            reasons[tuple(g)] = (
                "part of an object cut apart (its parts are not one chromosome); "
                f"learned: p={cut_p.get(g[0], 0.0):.2f}"
            )
    return regrouped_objects(seg, options, groups, reasons)


def _same(pairs: pd.DataFrame) -> set[tuple[int, int]]:
    """The candidate pairs (a, b) whose parts the rules made one object."""
    same = pairs["same_object"].to_numpy(bool)
    return {(int(a), int(b)) for a, b in zip(pairs["a"][same], pairs["b"][same], strict=True)}


def _not_judged(model: SegmentationModel, status: str) -> str:
    """Why the model left an object of the rules' ``status`` to the rules."""
    if not model.classify:
        return "the rules decide: the model was not better on its training spreads"
    return f"no {status} object in the training spreads"


def segment_with_model(
    image: np.ndarray,
    model: SegmentationModel,
    base: SegmentationParams | None = None,
    rules: Segmentation | None = None,
) -> Segmentation:
    """Segment with the model's settings, then let it set each object's status and split.

    ``rules``, the rules' segmentation of the same image, is reused when it was made with those
    settings (the model kept the base values), instead of segmenting again."""
    params = model.params(base)
    if rules is not None and rules.params == params:
        return apply_model(rules, model)
    return apply_model(segment_spread(image, params), model)
