"""The learned crossing score trained on the DAPI spreads with ``K.tif`` truth, and its estimate.

Every object that the segmentation's hand-made rules (``crossing_score="off"``) keep or flag
``cluster`` on the ADIR DAPI spreads is described by the 16 shape measures of
:func:`~napari_chromosome_sort.segmentation.learned.crossing_score.shape_measures`; it is
*positive* when it covers a real overlap region of the truth, a *single* when it matches one
truth chromosome.

1. Honest estimate: each probe set (A / P / V slides) held out in turn, C and the threshold
   chosen inside the other two (inner GroupKFold by slide), the held-out kept objects flagged;
   and the same with each slide held out in turn (chosen on the other 34 slides).
2. The shipped model: :func:`fit_crossing_model` on all spreads (C and threshold by the same
   inner cross-validation), compared with ``data/crossing_model.json``.
"""

from __future__ import annotations

import datetime
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.learned.crossing_score import (
    CrossingModel,
    CrossingTable,
    choose_head,
    crossing_candidates,
    fit_crossing_model,
    load_crossing_model,
    refit_head,
    shape_measures,
    spread_relative,
)

from .data import dapi_dir, dapi_pairs, read_dapi_pair
from .segmentation import covers_overlap, truth_ious

SOURCE = (
    "ADIR M-FISH DAPI spreads (github.com/jeanpat/MFISH, README_ADIR.md) with K.tif overlap truth"
)


def spread_objects(dapi: Path, truth_path: Path, cache: Path | None = None) -> dict:
    """Shape measures and truth labels of the kept / ``cluster`` objects of one spread (read from
    ``cache`` when a previous run left them there)."""
    out = cache / f"{dapi.stem}.npz" if cache else None
    if out is not None and out.exists():
        with np.load(out, allow_pickle=False) as z:
            return dict(z)
    from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread

    image, truth = read_dapi_pair(dapi, truth_path)
    # the hand-made rules only: the learned score is what is trained here
    # (and before crossings are resolved: the score runs first)
    seg = segment_spread(
        image,
        SegmentationParams(
            crossing_score="off",
            resolve_crossings=False,
            flatten_brightness="off",
            junction_score="off",
        ),
    )
    labels = seg.labels
    width = float(seg.stats.get("width", 4.0))
    covers = covers_overlap(labels, truth, width)
    _, n_match = truth_ious(truth, labels)
    # objects kept or set aside by the size and crossing rules; a cluster named nucleus afterwards
    # for being large, convex and round (segmentation.nuclei.name_convex_clusters) is one of them
    named = seg.objects["reason"].str.startswith("large and convex")
    sel = seg.objects[seg.objects["status"].isin(["chromosome", "cluster"]) | named]
    labs = sel["label"].astype(int).to_numpy()
    objects = {
        "kept": (sel["status"] == "chromosome").to_numpy(),
        "shape": shape_measures(
            labels, seg.signal, labs, seg.stats["median_area"], width, sel["n_parts"].to_numpy()
        ),
        "pos": covers[labs],
        "n_match": n_match[labs],
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **objects)
    return objects


def crossing_table(
    folder: Path | None = None, cache: Path | None = None, jobs: int = 2
) -> tuple[CrossingTable, np.ndarray]:
    """The training table of every DAPI spread with truth, and each row's probe set (A/P/V)."""
    pairs = dapi_pairs(folder or dapi_dir())
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        spreads = list(pool.map(spread_objects, *zip(*pairs, strict=True), [cache] * len(pairs)))
    names = np.concatenate(
        [[dapi.stem] * len(s["kept"]) for (dapi, _), s in zip(pairs, spreads, strict=True)]
    )
    table = CrossingTable(
        x=np.concatenate([s["shape"] for s in spreads]).astype(np.float64),
        positive=np.concatenate([s["pos"] for s in spreads]).astype(bool),
        n_match=np.concatenate([s["n_match"] for s in spreads]).astype(int),
        kept=np.concatenate([s["kept"] for s in spreads]).astype(bool),
        spreads=names,
        groups=np.array([name[:3] for name in names]),  # the slide
    )
    return table, np.array([name[0] for name in names])


def _counts(table: CrossingTable, flagged: np.ndarray, rows: np.ndarray) -> dict:
    """Overlap objects caught, singles lost and other kept objects flagged among ``rows``."""
    flagged = flagged & table.kept & rows
    singles = table.n_match * table.matched
    return {
        "overlap_objects": int((rows & table.positive).sum()),
        "overlap_caught": int((flagged & table.positive).sum()),
        "overlap_kept": int((rows & table.kept & table.positive).sum()),
        "singles_lost": int(singles[flagged].sum()),
        "singles": int(singles[rows].sum()),
        "other_flagged": int((flagged & ~table.positive & (table.n_match == 0)).sum()),
    }


def held_out_estimate(
    table: CrossingTable, probe_sets: np.ndarray, budget: float, min_rel_area: float
) -> pd.DataFrame:
    """Each probe set held out in turn: the model of the others, on its kept objects."""
    candidates = crossing_candidates(table.x, min_rel_area)
    rows = []
    for held in np.unique(probe_sets):
        test = probe_sets == held
        train = np.flatnonzero(~test)
        c, threshold, _ = choose_head(table, train, budget, min_rel_area)
        model = refit_head(table, train, c, threshold, min_rel_area)
        logits = np.where(test, model.logit(table.x), np.nan)
        z = spread_relative(logits, table.spreads, table.kept)
        flagged = test & candidates & (np.nan_to_num(z, nan=-np.inf) > threshold)
        rows.append(
            {
                "held_out": held,
                "C": c,
                "threshold": threshold,
                **_counts(table, flagged, test),
            }
        )
    out = pd.DataFrame(rows)
    pooled = out.drop(columns=["held_out", "C", "threshold"]).sum()
    pooled = {"held_out": "all", "C": np.nan, "threshold": np.nan, **pooled.to_dict()}
    out = pd.concat([out, pd.DataFrame([pooled])], ignore_index=True)
    out["singles_lost_share"] = out["singles_lost"] / out["singles"].clip(lower=1)
    return out


def slide_out_estimate(
    table: CrossingTable, probe_sets: np.ndarray, budget: float, min_rel_area: float
) -> pd.DataFrame:
    """Each slide held out in turn (the model and its threshold chosen on the other 34),
    summed per probe set, with the slide that keeps the largest share of its overlap objects."""
    per_slide = held_out_estimate(table, table.groups, budget, min_rel_area)
    per_slide = per_slide[per_slide["held_out"] != "all"].copy()
    group_of = dict(zip(table.groups, probe_sets, strict=True))
    per_slide["group"] = per_slide["held_out"].map(group_of)
    counts = ["overlap_objects", "overlap_caught", "overlap_kept", "singles_lost", "singles"]
    per_slide["still_kept"] = per_slide["overlap_kept"] - per_slide["overlap_caught"]
    rows = []
    for name, sub in [*per_slide.groupby("group"), ("all", per_slide)]:
        row = {"group": name, **sub[[*counts, "still_kept"]].sum().to_dict()}
        share = sub["still_kept"] / sub["overlap_objects"].clip(lower=1)
        worst = sub.loc[share.idxmax()]
        row["worst_slide"] = f"{worst['held_out']} ({worst['still_kept']} of "
        row["worst_slide"] += f"{worst['overlap_objects']} kept)"
        rows.append(row)
    out = pd.DataFrame(rows)
    out["overlap_kept_share"] = out["still_kept"] / out["overlap_objects"].clip(lower=1)
    out["singles_lost_share"] = out["singles_lost"] / out["singles"].clip(lower=1)
    return out


def train_shipped_model(
    table: CrossingTable, budget: float = 0.03, min_rel_area: float = 1.8
) -> CrossingModel:
    """The model of all spreads, as shipped in ``data/crossing_model.json``."""
    n_spreads = len(np.unique(table.spreads))
    provenance = (
        f"python -m validation crossing-model, {datetime.date.today()}: {n_spreads} {SOURCE}"
    )
    return fit_crossing_model(table, None, budget, min_rel_area, provenance=provenance)


def crossing_report(
    out: Path | None = None,
    cache: Path | None = None,
    jobs: int = 2,
    budget: float = 0.03,
    min_rel_area: float = 1.8,
) -> dict[str, pd.DataFrame]:
    """The held-out estimate, the retrained model beside the shipped one (written to ``out``)."""
    table, probe_sets = crossing_table(cache=cache, jobs=jobs)
    held = held_out_estimate(table, probe_sets, budget, min_rel_area)
    slide_out = slide_out_estimate(table, probe_sets, budget, min_rel_area)
    model = train_shipped_model(table, budget, min_rel_area)
    if out is not None:
        model.save(out)
    shipped = load_crossing_model()
    flagged = np.zeros(len(table.x), bool)
    for spread in np.unique(table.spreads):
        here = table.spreads == spread
        flagged[here] = model.flags(table.x[here], table.x[here & table.kept])
    in_sample = _counts(table, flagged, np.ones(len(table.x), bool))
    same = all(
        np.allclose(getattr(model, k), getattr(shipped, k), rtol=1e-6)
        for k in ("mean", "scale", "coef", "intercept")
    ) and np.isclose(model.threshold, shipped.threshold)
    retrained = pd.DataFrame(
        [
            {
                "objects": len(table.x),
                "spreads": len(np.unique(table.spreads)),
                "threshold": model.threshold,
                "shipped_threshold": shipped.threshold,
                "max_coef_difference": float(np.max(np.abs(np.subtract(model.coef, shipped.coef)))),
                "same_as_shipped": bool(same),
                **{f"in_sample_{k}": v for k, v in in_sample.items()},
                "written_to": str(out) if out else "",
            }
        ]
    )
    return {"held_out": held, "slide_out": slide_out, "retrained": retrained}
