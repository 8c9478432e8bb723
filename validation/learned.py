"""A segmentation model learned from the boxes of one (or two) Giemsa spreads, judged on the others.

For every ordered pair (training spread, other spread) the model of
:func:`napari_chromosome_sort.segmentation.learned.learn_segmentation` is learned from the training
spread's YOLO boxes and judged on the other spread: truth boxes found by kept objects (IoU >= 0.5,
one-to-one), beside the shipped defaults on the same spread. Then the same from every two spreads,
judged on each of the other three, beside the mean of the two one-spread models.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread
from napari_chromosome_sort.segmentation.learned import (
    SETTING_GRID,
    TrainingSpread,
    apply_model,
    learn_segmentation,
)

from .boxes import match_boxes
from .data import giemsa_spreads


def _key(name: str, params: SegmentationParams) -> tuple:
    return (name, *(getattr(params, k) for k in SETTING_GRID))


def _segment_job(args):
    spread, point = args
    seg = segment_spread(spread.image, replace(SegmentationParams(), **point))
    return replace(seg, signal=None)


def segment_grid(spreads: list[TrainingSpread], jobs: int = 2) -> dict[tuple, object]:
    """Every spread segmented at every grid point, keyed by (name, *grid values)."""
    points = [
        dict(zip(SETTING_GRID, v, strict=True)) for v in itertools.product(*SETTING_GRID.values())
    ]
    tasks = [(s, p) for p in points for s in spreads]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        segs = list(pool.map(_segment_job, tasks))
    return {
        _key(s.name, replace(SegmentationParams(), **p)): g
        for (s, p), g in zip(tasks, segs, strict=True)
    }


def _recall(seg, spread: TrainingSpread) -> tuple[int, float]:
    kept = seg.objects[seg.objects["status"] == "chromosome"]
    found = len(match_boxes(spread.boxes, kept))
    return found, found / max(len(spread.boxes), 1)


def _judge(train: list[TrainingSpread], test: TrainingSpread, cache: dict) -> dict:
    def segment(spread, params):
        return cache[_key(spread.name, params)]

    model = learn_segmentation(train, segment=segment)
    seg = apply_model(segment(test, model.params()), model)
    found, recall = _recall(seg, test)
    _, default = _recall(segment(test, SegmentationParams()), test)
    return {
        "learned_from": "+".join(s.name for s in train),
        "judged_on": test.name,
        "settings": ", ".join(f"{k}={v:g}" for k, v in model.settings.items()),
        "boxes": len(test.boxes),
        "found": found,
        "recall": recall,
        "default_recall": default,
    }


def summary(table: pd.DataFrame) -> dict:
    worst = table.loc[table["recall"].idxmin()]
    boxes = table["boxes"].sum()
    return {
        "pairs": len(table),
        "pooled_recall": table["found"].sum() / boxes,
        "pooled_default": float((table["default_recall"] * table["boxes"]).sum() / boxes),
        "mean_recall": table["recall"].mean(),
        "mean_default": table["default_recall"].mean(),
        "worst_pair": f"{worst['learned_from']} -> {worst['judged_on']}",
        "worst_recall": float(worst["recall"]),
        "below_default": int((table["recall"] < table["default_recall"] - 1e-9).sum()),
    }


def learned_report(jobs: int = 2) -> dict[str, pd.DataFrame]:
    """The one-spread and two-spread tables and their summaries."""
    spreads = [TrainingSpread(s.name, s.image, s.boxes[:, 1:]) for s in giemsa_spreads()]
    cache = segment_grid(spreads, jobs)
    one = pd.DataFrame([_judge([a], b, cache) for a in spreads for b in spreads if a is not b])
    two_rows = []
    for a, b in itertools.combinations(spreads, 2):
        for test in spreads:
            if test in (a, b):
                continue
            row = _judge([a, b], test, cache)
            singles = one[
                (one["judged_on"] == test.name) & one["learned_from"].isin([a.name, b.name])
            ]
            row["one_spread_mean"] = float(singles["recall"].mean())
            two_rows.append(row)
    two = pd.DataFrame(two_rows)
    two_summary = summary(two)
    two_summary["worse_than_one"] = int((two["recall"] < two["one_spread_mean"] - 1e-9).sum())
    return {
        "Learned from one spread, judged on each other spread": one,
        "Learned from one spread, summary": pd.DataFrame([summary(one)]),
        "Learned from two spreads, judged on each other spread": two,
        "Learned from two spreads, summary": pd.DataFrame([two_summary]),
    }
