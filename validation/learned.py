"""A segmentation model learned from annotated spreads, judged on spreads it did not learn from.

Giemsa: for every ordered pair (training spread, other spread) the model of
:func:`napari_chromosome_sort.segmentation.learned.learn_segmentation` is learned from the training
spread's YOLO boxes and judged on the other spread: truth boxes found by kept objects (IoU >= 0.5,
one-to-one), beside the shipped defaults on the same spread. Then the same from every two spreads,
judged on each of the other three, beside the mean of the two one-spread models.

DAPI: within each slide group (A, P, V), the slides (folders) in name order are taken three at a
time; a model learned from the K.tif masks (as boxes) of the spreads of three slides is judged on
every spread of the group's other slides: truth chromosomes found as one kept object at mask
IoU >= 0.5, beside the shipped defaults on the same spreads.

Both also count the objects kept (Giemsa: kept objects that match no box), learned and default:
a share found is raised for nothing by keeping everything.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams
from napari_chromosome_sort.segmentation.learned import (
    SETTING_GRID,
    Candidates,
    TrainingSpread,
    apply_model,
    candidates,
    learn_segmentation,
)

from .boxes import match_boxes
from .data import dapi_pairs, giemsa_spreads, read_dapi_pair, slide_group
from .segmentation import truth_found, truth_pieces


def _key(name: str, params: SegmentationParams, grid: dict) -> tuple:
    return (name, *(getattr(params, k) for k in grid))


def _candidates_job(args) -> Candidates:
    image, point = args
    c = candidates(image, replace(SegmentationParams(), **point))
    labels = c.seg.labels.astype(np.uint16) if c.seg.labels.max() < 2**16 else c.seg.labels
    return replace(c, seg=replace(c.seg, signal=None, labels=labels))


def segment_grid(
    spreads: list[TrainingSpread], grid: dict, jobs: int = 2
) -> dict[tuple, Candidates]:
    """Every spread's candidates at every grid point, keyed by (name, *grid values)."""
    points = [dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())]
    tasks = [(s, p) for p in points for s in spreads]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        found = list(pool.map(_candidates_job, [(s.image, p) for s, p in tasks], chunksize=4))
    return {
        _key(s.name, replace(SegmentationParams(), **p), grid): c
        for (s, p), c in zip(tasks, found, strict=True)
    }


def _learn(train: list[TrainingSpread], cache: dict, grid: dict, splits: bool):
    """The model learned from ``train`` (splits switched off when ``splits`` is False) and the
    cached segmenter it used."""

    def segment(spread, params):
        c = cache[_key(spread.name, params, grid)]
        return c if splits else Candidates(c.seg, pairs=c.pairs)

    return learn_segmentation(train, grid=grid, segment=segment), segment


def _recall(seg, spread: TrainingSpread) -> tuple[int, float, int]:
    """(boxes found, their share, kept objects) of a segmentation."""
    kept = seg.objects[seg.objects["status"] == "chromosome"]
    found = len(match_boxes(spread.boxes, kept))
    return found, found / max(len(spread.boxes), 1), len(kept)


def _judge(train, test: TrainingSpread, cache: dict, grid: dict, splits: bool) -> dict:
    model, segment = _learn(train, cache, grid, splits)
    seg = apply_model(segment(test, model.params()), model)
    found, recall, kept = _recall(seg, test)
    default_found, default, default_kept = _recall(segment(test, SegmentationParams()).seg, test)
    return {
        "learned_from": "+".join(s.name for s in train),
        "judged_on": test.name,
        "settings": ", ".join(f"{k}={v:g}" for k, v in model.settings.items()),
        "splits": model.splits,
        "pairs": model.pairs,
        "boxes": len(test.boxes),
        "found": found,
        "recall": recall,
        "default_recall": default,
        "kept_unmatched": kept - found,
        "default_kept_unmatched": default_kept - default_found,
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
        "above_default": int((table["recall"] > table["default_recall"] + 1e-9).sum()),
        "kept_unmatched": int(table["kept_unmatched"].sum()),
        "default_kept_unmatched": int(table["default_kept_unmatched"].sum()),
    }


def pair_matrix(one: pd.DataFrame) -> pd.DataFrame:
    """The one-spread table as a matrix (rows learned from, columns judged on), each cell
    'found / defaults'."""
    pairs = one[["recall", "default_recall"]].itertuples(index=False)
    cells = one.assign(cell=[f"{r:.3f} / {d:.3f}" for r, d in pairs])
    return (
        cells.pivot(index="learned_from", columns="judged_on", values="cell")
        .fillna("")
        .reset_index()
    )


def learned_report(
    jobs: int = 2, grid: dict | None = None, splits: bool = True, two: bool = True
) -> dict[str, pd.DataFrame]:
    """The one-spread and two-spread tables and their summaries (Giemsa)."""
    grid = grid or SETTING_GRID
    spreads = [TrainingSpread(s.name, s.image, s.boxes[:, 1:]) for s in giemsa_spreads()]
    cache = segment_grid(spreads, grid, jobs)
    one = pd.DataFrame(
        [_judge([a], b, cache, grid, splits) for a in spreads for b in spreads if a is not b]
    )
    tables = {
        "Learned from one spread, judged on each other spread": one,
        "Learned from one spread (rows), found / defaults on each other spread (columns)": (
            pair_matrix(one)
        ),
        "Learned from one spread, summary": pd.DataFrame([summary(one)]),
    }
    if not two:
        return tables
    two_rows = []
    for a, b in itertools.combinations(spreads, 2):
        for test in spreads:
            if test in (a, b):
                continue
            row = _judge([a, b], test, cache, grid, splits)
            singles = one[
                (one["judged_on"] == test.name) & one["learned_from"].isin([a.name, b.name])
            ]
            row["one_spread_mean"] = float(singles["recall"].mean())
            row["one_spread_min"] = float(singles["recall"].min())
            two_rows.append(row)
    two_table = pd.DataFrame(two_rows)
    two_summary = summary(two_table)
    two_summary["worse_than_one_mean"] = int(
        (two_table["recall"] < two_table["one_spread_mean"] - 1e-9).sum()
    )
    two_summary["worse_than_both"] = int(
        (two_table["recall"] < two_table["one_spread_min"] - 1e-9).sum()
    )
    tables["Learned from two spreads, judged on each other spread"] = two_table
    tables["Learned from two spreads, summary"] = pd.DataFrame([two_summary])
    return tables


# --- DAPI ------------------------------------------------------------------------------------


def _truth_boxes(truth: np.ndarray) -> np.ndarray:
    """The (n, 4) boxes of the truth chromosomes of a K.tif (as :func:`truth_pieces`)."""
    boxes = []
    for piece in truth_pieces(truth):
        ys, xs = np.nonzero(piece)
        boxes.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return np.asarray(boxes, float).reshape(-1, 4)


def slide_of(path: Path) -> str:
    """The slide (folder) of a DAPI spread."""
    return path.parent.name


def training_triples(slides: list[str]) -> list[list[str]]:
    """A group's slides in name order, three at a time (a last one or two join the last three)."""
    triples = [slides[i : i + 3] for i in range(0, len(slides) - len(slides) % 3, 3)]
    if len(slides) % 3 and triples:
        triples[-1] = triples[-1] + slides[len(slides) - len(slides) % 3 :]
    return triples


def dapi_report(
    jobs: int = 2, grid: dict | None = None, splits: bool = True
) -> dict[str, pd.DataFrame]:
    """Per test spread and per slide group: truth chromosomes found by a model learned from three
    slides of the group, beside the defaults (module docstring)."""
    grid = grid or SETTING_GRID
    pairs = dapi_pairs()
    spreads, truths, slides = [], {}, {}
    for dapi, truth_path in pairs:
        image, truth = read_dapi_pair(dapi, truth_path)
        spreads.append(TrainingSpread(dapi.name, image, _truth_boxes(truth)))
        truths[dapi.name] = truth
        slides[dapi.name] = slide_of(dapi)
    cache = segment_grid(spreads, grid, jobs)
    rows = []
    for group in sorted({slide_group(s.name) for s in spreads}):
        members = [s for s in spreads if slide_group(s.name) == group]
        for triple in training_triples(sorted({slides[s.name] for s in members})):
            train = [s for s in members if slides[s.name] in triple]
            model, segment = _learn(train, cache, grid, splits)
            for test in members:
                if slides[test.name] in triple:
                    continue
                seg = apply_model(segment(test, model.params()), model)
                found, n = truth_found(truths[test.name], seg.labels, seg.kept_labels())
                default = segment(test, SegmentationParams()).seg
                default_found, _ = truth_found(
                    truths[test.name], default.labels, default.kept_labels()
                )
                rows.append(
                    {
                        "group": group,
                        "learned_from": "+".join(triple),
                        "judged_on": test.name,
                        "slide": slides[test.name],
                        "settings": ", ".join(f"{k}={v:g}" for k, v in model.settings.items()),
                        "splits": model.splits,
                        "pairs": model.pairs,
                        "truth": n,
                        "found": found,
                        "default_found": default_found,
                        "kept": len(seg.kept_labels()),
                        "default_kept": len(default.kept_labels()),
                    }
                )
    table = pd.DataFrame(rows)
    return {
        "DAPI, learned from three slides, per spread": table,
        "DAPI per slide group": (dapi_group_summary(table)),
    }


def dapi_group_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per group and over all: pooled found vs defaults, and the worst test slide (lowest share
    found by a model, pooled over that slide's spreads)."""
    out = []
    for name, sub in [*((f"group {g}", s) for g, s in table.groupby("group")), ("all", table)]:
        by_slide = sub.groupby(["learned_from", "slide"])[["truth", "found", "default_found"]].sum()
        share = by_slide["found"] / by_slide["truth"]
        worst = share.idxmin()
        out.append(
            {
                "group": name,
                "models": sub["learned_from"].nunique(),
                "cases": len(sub),
                "truth": int(sub["truth"].sum()),
                "found": sub["found"].sum() / sub["truth"].sum(),
                "defaults": sub["default_found"].sum() / sub["truth"].sum(),
                "spreads_below_defaults": int((sub["found"] < sub["default_found"]).sum()),
                "spreads_above_defaults": int((sub["found"] > sub["default_found"]).sum()),
                "kept": int(sub["kept"].sum()),
                "default_kept": int(sub["default_kept"].sum()),
                "worst_slide": f"{worst[0]} -> {worst[1]}",
                "worst_found": float(share[worst]),
                "worst_defaults": float(
                    by_slide.loc[worst, "default_found"] / by_slide.loc[worst, "truth"]
                ),
            }
        )
    return pd.DataFrame(out)
