"""Segmentation figures on the real spreads, beside the naive baseline, per spread and pooled.

Giemsa DDX11-/- spreads (YOLO boxes): an annotated chromosome is *found* when a kept object's box
matches it one-to-one at IoU >= 0.5. DAPI spreads (K.tif truth): a truth chromosome (connected
piece of one class, overlap pixels excluded) is found when a kept object matches its mask at
IoU >= 0.5.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_chromosome_sort.segmentation import (
    CROSSING_RESOLVED,
    KEPT,
    SegmentationParams,
    segment_spread,
)

from .baseline import otsu_objects
from .boxes import box_areas, match_boxes, object_boxes
from .data import AnnotatedSpread, dapi_pairs, giemsa_spreads, read_dapi_pair, slide_group


def kept(objects: pd.DataFrame) -> pd.DataFrame:
    return objects[objects["status"] == "chromosome"]


def giemsa_row(spread: AnnotatedSpread, params: SegmentationParams | None = None) -> dict:
    """Recall of one spread's boxes by the segmentation and by the naive baseline."""
    seg = segment_spread(spread.image, params)
    objects = kept(seg.objects)
    matches = match_boxes(spread.boxes, objects)
    _, naive = otsu_objects(spread.image)
    naive_matches = match_boxes(spread.boxes, kept(naive))
    found = {i for i, _ in matches}
    c_rows = np.flatnonzero(spread.classes == 2)
    box_area = box_areas(spread.boxes)
    kept_area = box_areas(object_boxes(objects))
    return {
        "spread": spread.name,
        "boxes": len(spread.boxes),
        "found": len(matches),
        "recall": len(matches) / max(len(spread.boxes), 1),
        "naive_recall": len(naive_matches) / max(len(spread.boxes), 1),
        "kept": len(objects),
        "kept_unmatched": len(objects) - len(matches),
        "pairs_built": int((objects["n_parts"] > 1).sum()),
        "nuclei": int((seg.objects["status"] == "nucleus").sum()),
        "nucleus_sized_kept": int(np.sum(kept_area > 4 * box_area.max())) if len(objects) else 0,
        "type_c_recall": float(np.mean([i in found for i in c_rows])) if len(c_rows) else np.nan,
    }


def summary_row(table: pd.DataFrame, name: str = "pooled") -> dict:
    """Pooled figures of a per-spread table, with the worst spread named."""
    worst = table.loc[table["recall"].idxmin()]
    return {
        "spread": name,
        "boxes": int(table["boxes"].sum()),
        "found": int(table["found"].sum()),
        "recall": table["found"].sum() / max(table["boxes"].sum(), 1),
        "naive_recall": float(
            (table["naive_recall"] * table["boxes"]).sum() / table["boxes"].sum()
        ),
        "worst_spread": worst["spread"],
        "worst_recall": float(worst["recall"]),
        "below_naive": ",".join(table.loc[table["recall"] < table["naive_recall"], "spread"]),
    }


def giemsa_table(
    spreads: list[AnnotatedSpread] | None = None, params: SegmentationParams | None = None
) -> pd.DataFrame:
    """One row per spread (see :func:`giemsa_row`)."""
    spreads = giemsa_spreads() if spreads is None else spreads
    return pd.DataFrame([giemsa_row(s, params) for s in spreads])


# --- leave-one-spread-out choice of the constants ------------------------------------------

#: The constants of the segmentation that set its thresholds, the pairing rule and the neck split
#: (0 = off), each with the values the protocol may choose from (the shipped default among them).
GIEMSA_GRID: dict[str, list] = {
    "peak_quantile": [0.9, 1.0],
    "peak_fraction": [0.4, 0.5],
    "grow_fraction": [0.15, 0.2, 0.3],
    "pair_max_width_ratio": [0.7, 0.75, 0.8],
    "split_neck_factor": [0.0, 0.25, 0.4, 0.5],
}


def _grid_points(grid: dict[str, list]) -> list[dict]:
    import itertools

    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _found(args) -> int:
    spread, point = args
    seg = segment_spread(spread.image, SegmentationParams(**point))
    return len(match_boxes(spread.boxes, kept(seg.objects)))


def leave_one_spread_out(
    spreads: list[AnnotatedSpread] | None = None,
    grid: dict[str, list] | None = None,
    jobs: int = 2,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(held-out table, full grid table). For each spread, the grid point with the most boxes
    found on the *other* spreads is chosen (ties: the shipped default, then the first) and judged
    on the held-out spread; the default's own figure is beside it."""
    spreads = giemsa_spreads() if spreads is None else spreads
    points = _grid_points(grid or GIEMSA_GRID)
    jobs_list = [(s, p) for p in points for s in spreads]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        found = np.array(list(pool.map(_found, jobs_list))).reshape(len(points), len(spreads))
    n_boxes = np.array([len(s.boxes) for s in spreads])
    defaults = SegmentationParams().to_dict()
    is_default = np.array([all(defaults[k] == v for k, v in p.items()) for p in points])
    grid_table = pd.DataFrame(points)
    for j, s in enumerate(spreads):
        grid_table[s.name] = found[:, j] / n_boxes[j]
    grid_table["pooled"] = found.sum(axis=1) / n_boxes.sum()
    rows = []
    for j, s in enumerate(spreads):
        others = np.delete(np.arange(len(spreads)), j)
        score = found[:, others].sum(axis=1).astype(float)
        score += 0.5 * is_default  # ties go to the default
        chosen = int(np.argmax(score))
        rows.append(
            {
                "held_out": s.name,
                "chosen": ", ".join(f"{k}={v}" for k, v in points[chosen].items()),
                "held_out_recall": found[chosen, j] / n_boxes[j],
                "default_recall": found[is_default, j][0] / n_boxes[j]
                if is_default.any()
                else np.nan,
            }
        )
    return pd.DataFrame(rows), grid_table


# --- DAPI ----------------------------------------------------------------------------------


def truth_pieces(truth: np.ndarray, min_px: int = 10):
    """Each truth chromosome (connected piece of one class 1-24, >= ``min_px``) as a mask."""
    for cls in range(1, 25):
        comp, n = ndi.label(truth == cls)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        for k in range(1, n + 1):
            if sizes[k] >= min_px:
                yield comp == k


def truth_found(truth: np.ndarray, labels: np.ndarray, kept_ids) -> tuple[int, int]:
    """(truth chromosomes found as one kept object at mask IoU >= 0.5, truth chromosomes)."""
    areas = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    keep = np.zeros(areas.size, bool)
    keep[np.asarray(list(kept_ids), int)] = True
    n_truth = found = 0
    for piece in truth_pieces(truth):
        n_truth += 1
        ids, inter = np.unique(labels[piece], return_counts=True)
        ok = (ids > 0) & keep[ids]
        iou = inter[ok] / (piece.sum() + areas[ids[ok]] - inter[ok])
        found += bool(iou.size and iou.max() >= 0.5)
    return found, n_truth


def overlap_regions(truth: np.ndarray, width: float) -> np.ndarray:
    """Real overlap regions of a K.tif truth: connected areas of overlap pixels (255) of
    >= 0.5 x width^2 (K.tif also marks isolated specks and outline pixels as 255)."""
    overlap = truth == 255
    comp, _ = ndi.label(overlap)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return (sizes >= 0.5 * width**2)[comp] & overlap


def covers_overlap(labels: np.ndarray, truth: np.ndarray, width: float) -> np.ndarray:
    """Per label id: the object covers a real overlap region (>= 0.3 x width^2 of its pixels)."""
    counts = np.bincount(labels[overlap_regions(truth, width)], minlength=labels.max() + 1)
    return counts >= 0.3 * width**2


def overlap_objects(truth: np.ndarray, labels: np.ndarray, width: float) -> np.ndarray:
    """Label ids of the objects covering a real overlap region of the truth."""
    ids = np.flatnonzero(covers_overlap(labels, truth, width))
    return ids[ids > 0]


def truth_ious(truth: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label id: the best mask IoU with a truth chromosome (connected piece of one class,
    >= 10 px) and how many truth chromosomes it matches at IoU >= 0.5."""
    n = int(labels.max()) + 1
    areas = np.bincount(labels.ravel(), minlength=n)
    best_iou = np.zeros(n)
    n_match = np.zeros(n, int)
    for cls in range(1, 25):
        pieces, _ = ndi.label(truth == cls)
        piece_sizes = np.bincount(pieces.ravel())
        both = (pieces > 0) & (labels > 0)
        pairs, inter = np.unique(np.stack([pieces[both], labels[both]]), axis=1, return_counts=True)
        for (piece, lab), i in zip(pairs.T, inter, strict=True):
            if piece_sizes[piece] >= 10:
                iou = i / (piece_sizes[piece] + areas[lab] - i)
                best_iou[lab] = max(best_iou[lab], iou)
                n_match[lab] += iou >= 0.5
    return best_iou, n_match


def dapi_row(dapi: Path, truth_path: Path, params: SegmentationParams | None = None) -> dict:
    """:func:`dapi_stats` of one DAPI spread read from its files."""
    image, truth = read_dapi_pair(dapi, truth_path)
    return dapi_stats(image, truth, dapi.name, params)


def dapi_stats(
    image: np.ndarray, truth: np.ndarray, name: str, params: SegmentationParams | None = None
) -> dict:
    """Truth chromosomes found on one DAPI spread by the segmentation and the naive baseline,
    and how many objects on a real overlap are set aside as ``cluster``."""
    seg = segment_spread(image, params)
    found, n_truth = truth_found(truth, seg.labels, seg.kept_labels())
    width = float(seg.stats.get("width", 4.0))
    on_overlap = overlap_objects(truth, seg.labels, width)
    crossings = truth_crossings(truth, width)
    halves = [
        seg.full_mask(label) for label in seg.objects.label[seg.objects.status == CROSSING_RESOLVED]
    ]
    status = seg.objects.set_index("label")["status"]
    naive_labels, naive = otsu_objects(image)
    naive_found, _ = truth_found(truth, naive_labels, kept(naive)["label"])
    return {
        "spread": name,
        "group": slide_group(name),
        "boxes": n_truth,  # truth chromosomes (named like the Giemsa column for summary_row)
        "found": found,
        "recall": found / max(n_truth, 1),
        "naive_recall": naive_found / max(n_truth, 1),
        "kept": len(seg.kept_labels()),
        "overlap_objects": len(on_overlap),
        "overlap_cluster": int((status.loc[on_overlap] == "cluster").sum()),
        "overlap_kept": int((status.loc[on_overlap] == KEPT).sum()),
        "crossings": len(crossings),
        "crossings_resolved": crossings_resolved(crossings, halves),
    }


def _dapi_row(args) -> dict:
    return dapi_row(*args)


def dapi_table(
    limit: int | None = None,
    jobs: int = 2,
    params: SegmentationParams | None = None,
    folder: Path | None = None,
) -> pd.DataFrame:
    """One row per DAPI spread with truth (the first ``limit`` only, when given) of ``folder``
    (``<slide>/<image>D.tif`` + ``K.tif``; default the shared spreads), with its slide."""
    pairs = dapi_pairs(folder)[:limit]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        table = pd.DataFrame(list(pool.map(_dapi_row, [(d, t, params) for d, t in pairs])))
    table.insert(2, "slide", [d.parent.name for d, _ in pairs])
    return table


def dapi_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Pooled figures per slide group and over all, each with its worst slide."""
    rows = []
    for name, sub in [*((f"group {g}", sub) for g, sub in table.groupby("group")), ("all", table)]:
        row = summary_row(sub, name)
        row["overlap_cluster"] = sub["overlap_cluster"].sum() / max(sub["overlap_objects"].sum(), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def truth_crossings(truth: np.ndarray, width: float) -> list[list[np.ndarray]]:
    """The two-chromosome crossings of a K.tif truth: for every real overlap region
    (:func:`overlap_regions`) met by exactly two chromosome classes, each class's whole
    chromosome (its pixels connected through the region, plus the region's overlap pixels)."""
    regions, n = ndi.label(overlap_regions(truth, width))
    out = []
    for k, sl in enumerate(ndi.find_objects(regions), 1):
        pad = int(2 * width) + 2
        win = tuple(slice(max(s.start - pad, 0), s.stop + pad) for s in sl)
        region = regions[win] == k
        ring = ndi.binary_dilation(region, iterations=2) & ~region
        classes, counts = np.unique(truth[win][ring], return_counts=True)
        ok = (classes > 0) & (classes < 255) & (counts >= width)
        if ok.sum() != 2:
            continue
        chromosomes = []
        for cls in classes[ok]:
            comp, _ = ndi.label((truth == cls) | (regions == k))
            ids = np.unique(comp[win][region])
            mask = np.isin(comp, ids[ids > 0])
            chromosomes.append(mask)
        out.append(chromosomes)
    return out


def crossings_resolved(
    crossings: list[list[np.ndarray]], halves: list[np.ndarray], min_iou: float = 0.5
) -> int:
    """How many two-chromosome ``crossings`` have both chromosomes matched (mask IoU >=
    ``min_iou``) by two different full masks of ``halves`` (the crossing-resolved objects)."""

    def iou(a, b):
        inter = np.logical_and(a, b).sum()
        return inter / max(np.logical_or(a, b).sum(), 1)

    done = 0
    for first, second in crossings:
        near = [h for h in halves if h[first | second].any()]
        a = [i for i, h in enumerate(near) if iou(h, first) >= min_iou]
        b = [i for i, h in enumerate(near) if iou(h, second) >= min_iou]
        done += any(i != j for i in a for j in b)
    return done
