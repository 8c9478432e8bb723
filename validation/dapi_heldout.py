"""DAPI segmentation judged as Giemsa is: every constant and learned score chosen on other slides.

The 72 ADIR DAPI spreads with ``K.tif`` truth lie on 35 slides in three slide groups (probe
kits A, P, V). Each setting of a small grid of the segmentation's constants and crossing steps
is run on every spread once (:mod:`.dapi_cache`). Then, for each slide (slide-out) or each slide
group (slide-group-out) held out, the setting with the best score on the *other* slides is
chosen and judged on the held-out one; the learned crossing score, where a setting uses it, is
retrained without the held-out slides. The score of a setting on a set of spreads:

    truth chromosomes found as one kept object
    + 2 x two-chromosome crossings resolved into both chromosomes (each half mask IoU >= 0.5)
    - objects covering a real overlap kept as a single chromosome

(each term counts chromosomes read right or wrong by the crops). Beside it: the shipped defaults
on every spread (the *in-sample* figure: they were chosen on these shared slides) and the naive
Otsu baseline.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams
from napari_chromosome_sort.segmentation.crossings.detect import (
    resolution_candidates,
    resolve_crossings,
)
from napari_chromosome_sort.segmentation.crossings.resolve import RESOLVED

from .baseline import otsu_objects
from .dapi_cache import cached_segmentation
from .segmentation import (
    covers_overlap,
    crossings_resolved,
    kept,
    truth_crossings,
    truth_found,
    truth_pieces,
)

#: the segmentation constants swept (the shipped default first in each list); the outline-only
#: neck split is tried with the neck split on
SEGMENT_POINTS: list[dict] = [
    {"peak_fraction": pf, "split_neck_factor": nf, "grow_fraction": gf, "split_by_outline": o}
    for o, nf in ((False, 0.4), (True, 0.4), (False, 0.0))
    for pf in (0.5, 0.4)
    for gf in (0.2, 0.3)
]
#: the crossing steps swept on each segmentation: resolution off / of objects set aside only
#: (each chromosome bent at most 45 or 60 degrees through the crossing) / of kept objects from
#: 1.2 x the median too
CROSSING_GRID: list[dict] = [
    {"resolve_crossings": False},
    {"resolve_crossings": True, "resolve_kept_min_area": 0.0, "resolve_max_bend": 45.0},
    {"resolve_crossings": True, "resolve_kept_min_area": 0.0, "resolve_max_bend": 60.0},
    {"resolve_crossings": True, "resolve_kept_min_area": 1.2, "resolve_max_bend": 45.0},
]


def _objects(entry: dict) -> list[dict]:
    return entry["objects"].to_dict(orient="records")


def crossing_steps(entry: dict, post: dict, flags: set[int] | None = None):
    """(label image, objects, full masks of resolved halves) of a cached segmentation after the
    crossing steps ``post``: the learned score's ``flags`` (labels) set aside, then resolution."""
    labels = entry["labels"].copy()
    objects = _objects(entry)
    for o in objects:
        if flags and o["label"] in flags and o["status"] == "chromosome":
            o["status"], o["reason"] = "cluster", "crossing score"
    extra: dict = {}
    if post.get("resolve_crossings"):
        params = SegmentationParams(**post)
        extra = resolve_crossings(
            labels,
            objects,
            resolution_candidates(objects),
            entry["median_area"],
            entry["width"],
            params,
        )
    return labels, objects, extra


def truth_piece_labels(truth: np.ndarray, min_px: int = 10) -> np.ndarray:
    """Every truth chromosome of :func:`.segmentation.truth_pieces` as one label."""
    out = np.zeros(truth.shape, np.int32)
    for k, piece in enumerate(truth_pieces(truth, min_px), 1):
        out[piece] = k
    return out


def _ious(pieces: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth piece, label, IoU) of every overlapping pair."""
    both = (pieces > 0) & (labels > 0)
    n = int(labels.max()) + 1
    key, inter = np.unique(pieces[both].astype(np.int64) * n + labels[both], return_counts=True)
    p, lab = np.divmod(key, n)
    piece_area = np.bincount(pieces.ravel())
    label_area = np.bincount(labels.ravel(), minlength=n)
    return p, lab, inter / (piece_area[p] + label_area[lab] - inter)


_TRUTH: dict = {}


def _truth_of(entry: dict) -> tuple[np.ndarray, list]:
    """(truth piece labels, two-chromosome crossings) of a spread, computed once per process."""
    key = (entry["name"], round(entry["width"], 3))
    if key not in _TRUTH:
        truth = entry["truth"]
        _TRUTH[key] = (truth_piece_labels(truth), truth_crossings(truth, entry["width"]))
    return _TRUTH[key]


def spread_figures(entry: dict, post: dict, flags: set[int] | None = None) -> dict:
    """Truth chromosomes found, crossings resolved and overlap objects kept of one spread."""
    labels, objects, extra = crossing_steps(entry, post, flags)
    truth, width = entry["truth"], entry["width"]
    pieces, crossings = _truth_of(entry)
    n = int(labels.max()) + 1
    status = np.full(n, "", object)
    for o in objects:
        status[o["label"]] = o["status"]
    p, lab, iou = _ious(pieces, labels)
    good = iou >= 0.5
    found = len(np.unique(p[good & (status[lab] == "chromosome")]))
    n_match = np.bincount(lab[good], minlength=n)
    covers = covers_overlap(labels, truth, width)
    covers = np.pad(covers, (0, max(n - covers.size, 0)))[:n]
    covers[0] = False
    halves = []
    for label in np.flatnonzero(status == RESOLVED):
        mask = labels == label
        if label in extra:
            y0, x0, local = extra[label]
            mask[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] |= local
        halves.append(mask)
    kept_ = status == "chromosome"
    return {
        "found": found,
        "truth": int(pieces.max()),
        "overlap_objects": int(covers.sum()),
        "overlap_kept": int((covers & kept_).sum()),
        "crossings": len(crossings),
        "resolved": crossings_resolved(crossings, halves),
        "resolved_objects": len(halves),
        "singles_kept": int((kept_ & (n_match > 0) & ~covers).sum()),
        "kept": int(kept_.sum()),
    }


def naive_found(dapi: Path, truth_path: Path, cache: Path) -> int:
    """Truth chromosomes found by the naive Otsu baseline (cached)."""
    out = cache / dapi.stem / "naive.txt"
    if out.exists():
        return int(out.read_text())
    from .data import read_dapi_pair

    image, truth = read_dapi_pair(dapi, truth_path)
    naive_labels, naive = otsu_objects(image)
    found, _ = truth_found(truth, naive_labels, kept(naive)["label"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(str(found))
    return found


def _spread_rows(args) -> list[dict]:
    dapi, truth_path, cache, points, posts, flags_by_point = args
    rows = []
    naive = naive_found(dapi, truth_path, cache)
    for i, point in enumerate(points):
        entry = cached_segmentation(dapi, truth_path, point, cache)
        for j, post in enumerate(posts):
            for score in (False, True):
                if score and flags_by_point is None:
                    continue
                flags = flags_by_point[i] if score else None
                figures = spread_figures(entry, post, flags)
                rows.append(
                    {
                        "spread": dapi.stem,
                        "slide": dapi.parent.name,
                        "group": dapi.stem[0],
                        "point": i,
                        "post": j,
                        "score": score,
                        "naive": naive,
                        **figures,
                    }
                )
    return rows


def sweep(pairs, cache: Path, points=None, posts=None, flags=None, jobs: int = 2) -> pd.DataFrame:
    """One row per spread x segmentation setting x crossing setting (x learned score on/off when
    ``flags`` maps each spread to its per-setting flagged labels)."""
    points = points or SEGMENT_POINTS
    posts = posts or CROSSING_GRID
    work = [
        (d, t, cache, points, posts, None if flags is None else flags[d.stem]) for d, t in pairs
    ]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return pd.DataFrame([r for rows in pool.map(_spread_rows, work) for r in rows])


def cached_sweep(pairs, cache: Path, jobs: int = 2) -> pd.DataFrame:
    """:func:`sweep` of the default grids, kept in ``cache`` beside the grids it was run on
    (run again when the grids or the spreads change; delete the file after changing code)."""
    import json

    signature = json.dumps(
        {"points": SEGMENT_POINTS, "posts": CROSSING_GRID, "spreads": [d.stem for d, _ in pairs]}
    )
    table_file, grid_file = cache / "sweep.csv", cache / "sweep.json"
    if table_file.exists() and grid_file.exists() and grid_file.read_text() == signature:
        return pd.read_csv(table_file)
    table = sweep(pairs, cache, jobs=jobs)
    cache.mkdir(parents=True, exist_ok=True)
    table.to_csv(table_file, index=False)
    grid_file.write_text(signature)
    return table


def objective(rows: pd.DataFrame) -> pd.Series:
    """The choice score of each row (see the module docstring)."""
    return rows["found"] + 2 * rows["resolved"] - rows["overlap_kept"]


def default_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the shipped defaults (the first segmentation setting, the default crossing
    steps, no learned score)."""
    sel = (table["point"] == 0) & (table["post"] == default_post()) & ~table["score"]
    return table[sel].assign(chosen="shipped defaults")


def group_summary(rows: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Per slide group and pooled: truth chromosomes found, naive, worst slide, overlap objects
    kept as a single chromosome, two-chromosome crossings resolved."""
    out = []
    for name, sub in [*rows.groupby("group"), ("all", rows)]:
        slides = sub.groupby("slide")[["found", "truth"]].sum()
        recall = slides["found"] / slides["truth"].clip(lower=1)
        worst = recall.idxmin()
        out.append(
            {
                "protocol": protocol,
                "group": name,
                "truth": int(sub["truth"].sum()),
                "found": int(sub["found"].sum()),
                "recall": sub["found"].sum() / max(sub["truth"].sum(), 1),
                "naive": sub["naive"].sum() / max(sub["truth"].sum(), 1),
                "worst_slide": f"{worst} ({recall[worst]:.2f})",
                "overlap_kept": f"{int(sub['overlap_kept'].sum())} / "
                f"{int(sub['overlap_objects'].sum())}",
                "overlap_kept_share": sub["overlap_kept"].sum()
                / max(sub["overlap_objects"].sum(), 1),
                "crossings_resolved": f"{int(sub['resolved'].sum())} / "
                f"{int(sub['crossings'].sum())}",
                "resolved_objects": int(sub["resolved_objects"].sum()),
            }
        )
    return pd.DataFrame(out)


def heldout_report(cache: Path, jobs: int = 2, limit: int | None = None) -> dict:
    """The DAPI figures in-sample (shipped defaults), slide-out and slide-group-out, and the
    settings chosen."""
    from .data import dapi_pairs

    table = cached_sweep(dapi_pairs()[:limit], cache, jobs)
    slide_out = held_out(table, "slide")
    group_out = held_out(table, "group")
    summary = pd.concat(
        [
            group_summary(default_rows(table), "in-sample (shipped defaults)"),
            group_summary(slide_out, "slide-out"),
            group_summary(group_out, "slide-group-out"),
        ],
        ignore_index=True,
    )
    chosen = pd.concat(
        [
            slide_out.groupby("chosen")["slide"].nunique().rename("slides held out"),
            group_out.groupby("chosen")["group"].agg(lambda g: ",".join(sorted(set(g)))),
        ],
        axis=1,
    ).reset_index()
    return {"summary": summary, "chosen": chosen, "grid": table}


def describe(point: int, post: int, score: bool) -> str:
    """The constants of a setting of the sweep."""
    constants = {**SEGMENT_POINTS[point], **CROSSING_GRID[post]}
    text = ", ".join(f"{k}={v}" for k, v in constants.items())
    return text + (", learned crossing score" if score else "")


def held_out(table: pd.DataFrame, unit: str) -> pd.DataFrame:
    """For each value of ``unit`` ("slide" or "group") held out: the setting with the best
    summed :func:`objective` on the other units (ties: the shipped default), judged there."""
    table = table.assign(objective=objective(table))
    keys = ["point", "post", "score"]
    default = (0, default_post(), False)
    out = []
    for held, test in table.groupby(unit):
        train = table[table[unit] != held].groupby(keys)["objective"].sum()
        train = train + 0.5 * np.array([key == default for key in train.index])
        point, post, score = train.idxmax()
        sel = (test["point"] == point) & (test["post"] == post) & (test["score"] == score)
        out.append(test[sel].assign(chosen=describe(int(point), int(post), bool(score))))
    return pd.concat(out, ignore_index=True)


def default_post() -> int:
    """Index in :data:`CROSSING_GRID` of the shipped crossing settings."""
    d = SegmentationParams()
    for j, post in enumerate(CROSSING_GRID):
        if all(getattr(d, k) == v for k, v in post.items()):
            return j
    return 0
