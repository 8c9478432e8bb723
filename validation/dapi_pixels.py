"""The learned pixel classes on DAPI, trained on some slides and judged on the others.

For every spread with ``K.tif`` truth: the shipped rules' segmentation (from the held-out cache,
:mod:`.dapi_cache`) with its crossing steps, and a sample of labelled pixels (kept in the
cache). Per fold, a forest is trained on the other folds' pixels and applied to the fold's
spreads; the rules' clusters are then cut by the learned classes
(:func:`~napari_chromosome_sort.segmentation.learned.pixels.refine_objects`). Folds: each probe
kit (*kit-out*, 3 folds) and the 35 slides dealt into 5 folds (*slide-out*). The cutting's
constants (:data:`REFINE_GRID`, the rules alone among them) are chosen per held-out fold on the
other folds' held-out spreads, by the choice score of :func:`.dapi_heldout.objective`.
*In-sample*: the forest trained on all 72 spreads (the shipped one) with the shipped constants.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams
from napari_chromosome_sort.segmentation.learned import pixels as lp

from .dapi_cache import cached_segmentation
from .dapi_heldout import (
    CROSSING_GRID,
    SEGMENT_POINTS,
    crossing_steps,
    default_post,
    figures_of,
    group_summary,
    naive_found,
    objective,
)

PER_CLASS = 1500  # pixels sampled per class and spread
N_SLIDE_FOLDS = 5
#: the cutting constants tried (None: the rules alone), then the rules on learned overlap
#: (:func:`~napari_chromosome_sort.segmentation.learned.pixels.split_overlaps`) after the cut:
#: kept objects on a compact learned overlap region (1 / 2 / 3 x width^2) resolved at it or set
#: aside, and clusters the cut left whole resolved at it (from 0.25 x width^2)
REFINE_GRID: list[dict | None] = (
    [None]
    + [
        {"piece_overlap_min": pm, "max_piece": mp, "min_seed": ms}
        for pm in (0.15, 0.3, 0.6)
        for mp in (1.5, 2.0)
        for ms in (0.5, 1.0)
    ]
    + [
        {"piece_overlap_min": pm, "max_piece": 2.0, "min_seed": 0.5, **rule}
        for pm in (0.3, 0.6)
        for rule in (
            {"kept_overlap_min": 1.0},
            {"kept_overlap_min": 2.0},
            {"kept_overlap_min": 3.0},
            {"cluster_overlap_min": 0.25},
        )
    ]
)


def typical_peak(signal: np.ndarray) -> float:
    """The spread's typical object peak, as the segmentation measures it."""
    from napari_chromosome_sort.segmentation.signal import spread_levels

    levels = spread_levels(signal, SegmentationParams())
    return levels.typical_peak if levels else float(np.percentile(signal, 99))


def spread_sample(dapi: Path, truth_path: Path, cache: Path) -> dict:
    """The spread's sampled pixel features and classes (cached)."""
    out = cache / dapi.stem / f"pixels_{PER_CLASS}.npz"
    if not out.exists():
        entry = cached_segmentation(dapi, truth_path, SEGMENT_POINTS[0], cache)
        targets = lp.pixel_targets(entry["truth"], entry["width"])
        signal = entry["signal"]
        features = lp.pixel_features(signal, typical_peak(signal), entry["width"])
        rng = np.random.default_rng(sum(dapi.stem.encode()))
        idx = lp.sample_pixels(targets, PER_CLASS, rng)
        x = features.reshape(-1, features.shape[-1])[idx]
        tmp = out.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, x=x.astype(np.float32), y=targets.ravel()[idx])
        tmp.replace(out)
    with np.load(out) as z:
        return {"x": z["x"], "y": z["y"]}


def folds(pairs) -> dict[str, dict[str, str]]:
    """spread -> fold, per protocol: the probe kit; the slides dealt into 5 folds; one fold of
    every spread (in-sample)."""
    slides = sorted({d.parent.name for d, _ in pairs})
    slide_fold = {s: f"slides{i % N_SLIDE_FOLDS + 1}" for i, s in enumerate(slides)}
    return {
        "kit-out": {d.stem: d.stem[0] for d, _ in pairs},
        "slide-out": {d.stem: slide_fold[d.parent.name] for d, _ in pairs},
        "in-sample": {d.stem: "all" for d, _ in pairs},
    }


def _sample(args):
    return args[0].stem, spread_sample(*args)


def _probabilities(dapi: Path, entry: dict, model_file: Path, cache: Path) -> np.ndarray:
    """The forest's class probabilities of a spread (cached)."""
    out = cache / dapi.stem / f"proba_{model_file.stem}.npy"
    if out.exists():
        return np.load(out).astype(np.float32)
    signal = entry["signal"]
    features = lp.pixel_features(signal, typical_peak(signal), entry["width"])
    proba = lp.PixelForest.load(model_file).predict_proba(features)
    np.save(out, proba.astype(np.float16))
    return proba


def _judge(args) -> list[dict]:
    dapi, truth_path, cache, model_file = args
    entry = cached_segmentation(dapi, truth_path, SEGMENT_POINTS[0], cache)
    proba = _probabilities(dapi, entry, model_file, cache)
    base = {"spread": dapi.stem, "slide": dapi.parent.name, "group": dapi.stem[0]}
    base["naive"] = naive_found(dapi, truth_path, cache)
    rows = []
    for i, setting in enumerate(REFINE_GRID):
        labels, objects, extra = crossing_steps(entry, CROSSING_GRID[default_post()])
        if setting is not None:
            extra.update(lp.refine_objects(labels, objects, proba, entry["width"], **setting))
        rows.append({**base, "setting": i, **figures_of(entry, labels, objects, extra)})
    labels, objects = pixel_objects(proba, entry["width"])
    alone = figures_of(entry, labels, objects, {})
    rows.append({**base, "setting": -1, **alone})
    return rows


def judged_table(pairs, cache: Path, jobs: int = 2) -> pd.DataFrame:
    """One row per protocol x spread x setting of :data:`REFINE_GRID` (-1: the learned
    classes alone, :func:`pixel_objects`), each spread judged by its fold's forest."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        samples = dict(pool.map(_sample, [(d, t, cache) for d, t in pairs]))
    rows = []
    for protocol, fold_of in folds(pairs).items():
        work = []
        for fold in sorted(set(fold_of.values())):
            train = [s for s in samples if fold_of[s] != fold or fold == "all"]
            if not train:
                continue
            model_file = cache / f"pixel_model_{protocol}_{fold}_{len(train)}.st"
            if not model_file.exists():
                x = np.concatenate([samples[s]["x"] for s in train])
                y = np.concatenate([samples[s]["y"] for s in train])
                lp.fit_forest(x, y, n_jobs=jobs).save(model_file)
            work += [(d, t, cache, model_file) for d, t in pairs if fold_of[d.stem] == fold]
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for spread_rows in pool.map(_judge, work):
                rows += [
                    {"protocol": protocol, "fold": fold_of[r["spread"]], **r} for r in spread_rows
                ]
    return pd.DataFrame(rows)


def chosen_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per protocol: each fold judged with the setting of best summed :func:`objective` on the
    other folds (the rules alone on a tie); in-sample: the shipped setting."""
    table = table[table["setting"] >= 0].assign(objective=lambda t: objective(t))
    out = []
    for protocol, sub in table.groupby("protocol"):
        for fold, test in sub.groupby("fold"):
            if protocol == "in-sample":
                setting = REFINE_GRID.index(shipped_setting())
            else:
                train = sub[sub["fold"] != fold].groupby("setting")["objective"].sum()
                setting = int((train + 0.5 * (train.index == 0)).idxmax())
            out.append(test[test["setting"] == setting].assign(chosen=str(REFINE_GRID[setting])))
    return pd.concat(out, ignore_index=True)


def shipped_setting() -> dict:
    """The cutting constants the segmentation uses (its defaults)."""
    p = SegmentationParams()
    return {
        "piece_overlap_min": p.pixel_overlap_min,
        "max_piece": p.pixel_max_piece,
        "min_seed": p.pixel_min_seed,
    }


def pixel_report(cache: Path, jobs: int = 2, limit: int | None = None) -> dict:
    """The tables of ``python -m validation dapi-pixels``."""
    from .data import dapi_pairs

    table = judged_table(dapi_pairs()[:limit], cache, jobs)
    table.to_csv(cache / "pixels_judged.csv", index=False)
    rules = table[(table["setting"] == 0) & (table["protocol"] == "in-sample")]
    alone = table[table["setting"] == -1]
    chosen = chosen_rows(table)
    summary = pd.concat(
        [group_summary(rules, "rules (shipped defaults)")]
        + [group_summary(sub, f"learned cuts, {p}") for p, sub in chosen.groupby("protocol")]
        + [
            group_summary(sub, f"learned classes alone, {p}")
            for p, sub in alone.groupby("protocol")
        ],
        ignore_index=True,
    )
    choices = chosen.groupby(["protocol", "fold"])["chosen"].first().reset_index()
    return {"DAPI, learned pixel classes": summary, "constants chosen per fold": choices}


def pixel_objects(proba: np.ndarray, width: float) -> tuple[np.ndarray, list[dict]]:
    """A segmentation from the learned classes alone (the comparison, not shipped): seeds where
    ``chromosome`` is the likeliest class (>= ½ width^2), grown by watershed over the pixels
    likelier stained than background; kept unless under ¼ or over 2.5 x the median object,
    within 2 px of the edge, or holding 0.3 x width^2 of learned overlap."""
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential, watershed

    best = proba.argmax(-1)
    seeds, n = ndi.label(best == lp.CHROMOSOME)
    small = np.bincount(seeds.ravel(), minlength=n + 1) < 0.5 * width**2
    small[0] = False
    seeds[small[seeds]] = 0
    stained = (proba[..., lp.BACKGROUND] < 0.5) | (seeds > 0)
    labels = relabel_sequential(watershed(-proba[..., lp.CHROMOSOME], seeds, mask=stained))[0]
    n = int(labels.max())
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    overlap = np.bincount(labels[best == lp.OVERLAP], minlength=n + 1)
    median = float(np.median(areas[1:])) if n else 1.0
    edge = np.zeros(n + 1, bool)
    edge[
        np.unique(
            np.concatenate(
                [
                    labels[:2].ravel(),
                    labels[-2:].ravel(),
                    labels[:, :2].ravel(),
                    labels[:, -2:].ravel(),
                ]
            )
        )
    ] = True
    objects = []
    for label in range(1, n + 1):
        rel = areas[label] / max(median, 1.0)
        bad = rel < 0.25 or rel > 2.5 or edge[label] or overlap[label] >= 0.3 * width**2
        status = "cluster" if bad else "chromosome"
        objects.append({"label": label, "status": status, "reason": "", "n_parts": 1})
    return labels, objects
