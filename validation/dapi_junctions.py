"""The learned junction score (``segmentation/learned/junctions.py``) trained on the DAPI spreads
with ``K.tif`` truth, judged on slides it was not trained on.

1. Every cut the kept objects of a spread offer (segmented with the junction score off), its
   features and whether it is right: its pieces match more truth chromosomes (mask IoU >= 0.5)
   than the whole object.
2. Slide-out: for each slide, the model trained on the cuts of the other 34 slides segments the
   slide's spreads end to end; beside it the segmentation without the score and with the model
   trained on all 72 spreads (in-sample, the shipped one, written again to the cache and
   compared with ``data/junction_model.json``). The cuts are learned and judged with the
   learned pixel classes off; the shipped defaults (both on) are the last row.
3. ``--folder``: the shipped model on any other folder of ``<slide>/<image>D.tif`` + ``K.tif``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread
from napari_chromosome_sort.segmentation.learned.junctions import (
    FEATURES,
    fit_junction_model,
    load_junction_model,
    propose_cuts,
)

from .data import dapi_pairs, read_dapi_pair
from .segmentation import dapi_stats, truth_pieces

SOURCE = "ADIR M-FISH DAPI spreads (github.com/jeanpat/MFISH, README_ADIR.md), K.tif truth"


def _truth_labels(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label image of the truth chromosomes, their sizes)."""
    labels = np.zeros(truth.shape, np.int32)
    for k, piece in enumerate(truth_pieces(truth), 1):
        labels[piece] = k
    return labels, np.bincount(labels.ravel())


def _matches(mask: np.ndarray, truth_labels: np.ndarray, sizes: np.ndarray) -> int:
    """How many truth chromosomes ``mask`` matches at mask IoU >= 0.5 (0 or 1)."""
    ids, inter = np.unique(truth_labels[mask], return_counts=True)
    on = ids > 0
    return int((inter[on] / (mask.sum() + sizes[ids[on]] - inter[on]) >= 0.5).sum())


def spread_cuts(dapi: Path, truth_path: Path) -> pd.DataFrame:
    """The cuts one spread's kept objects offer: features, truth matched whole and in pieces."""
    image, truth = read_dapi_pair(dapi, truth_path)
    seg = segment_spread(image, SegmentationParams(junction_score="off", pixel_classes="off"))
    kept = seg.kept_labels()
    areas = np.bincount(seg.labels.ravel())
    typical = float(np.median(areas[kept])) if kept else 0.0
    width = float(seg.stats.get("width", 0.0))
    truth_labels, sizes = _truth_labels(truth)
    rows = []
    for cut in propose_cuts(
        seg.labels,
        kept,
        seg.signal,
        typical,
        width,
        seg.params,
        (seg.stats["median_area"], seg.pair_limits),
    ):
        local_truth = truth_labels[cut.window]
        whole = _matches(cut.pieces > 0, local_truth, sizes)
        pieces = sum(
            _matches(cut.pieces == k, local_truth, sizes)
            for k in np.unique(cut.pieces[cut.pieces > 0])
        )
        rows.append(
            {
                "spread": dapi.name,
                "slide": dapi.parent.name,
                "label": cut.label,
                "whole": whole,
                "pieces": pieces,
                **dict(zip(FEATURES, cut.features, strict=True)),
            }
        )
    return pd.DataFrame(rows, columns=["spread", "slide", "label", "whole", "pieces", *FEATURES])


def _cached_cuts(args) -> pd.DataFrame:
    dapi, truth_path, cache = args
    out = cache / "cuts" / f"{dapi.stem}.csv" if cache else None
    if out is not None and out.exists():
        return pd.read_csv(out)
    table = spread_cuts(dapi, truth_path)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    return table


def cuts_table(pairs, cache: Path | None = None, jobs: int = 2) -> pd.DataFrame:
    """:func:`spread_cuts` of every spread of ``pairs`` (kept in ``cache/cuts``), with ``gain``
    (truth chromosomes matched by the pieces minus by the whole) and ``right`` (gain > 0)."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        tables = list(pool.map(_cached_cuts, [(d, t, cache) for d, t in pairs]))
    table = pd.concat([t for t in tables if len(t)], ignore_index=True)
    table["gain"] = table["pieces"] - table["whole"]
    table["right"] = table["gain"] > 0
    return table


def _stats(args) -> dict:
    dapi, truth_path, params = args
    image, truth = read_dapi_pair(dapi, truth_path)
    return {"slide": dapi.parent.name, **dapi_stats(image, truth, dapi.name, params)}


def end_to_end(pairs, params_of, jobs: int = 2) -> pd.DataFrame:
    """:func:`.segmentation.dapi_stats` of each spread with the parameters ``params_of(slide)``."""
    work = [(d, t, params_of(d.parent.name)) for d, t in pairs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return pd.DataFrame(list(pool.map(_stats, work)))


def summary(table: pd.DataFrame, name: str) -> dict:
    """Pooled figures of a per-spread table: found per group, worst spread, overlaps, crossings."""
    found = table.groupby("group")[["found", "boxes"]].sum()
    worst = table.loc[table["recall"].idxmin()]
    return {
        "setting": name,
        "found": table["found"].sum() / table["boxes"].sum(),
        **{f"group {g}": r.found / r.boxes for g, r in found.iterrows()},
        "worst": f"{worst['spread']} ({worst['recall']:.2f})",
        "overlap_kept": f"{table['overlap_kept'].sum()} of {table['overlap_objects'].sum()}",
        "crossings_resolved": f"{table['crossings_resolved'].sum()} of {table['crossings'].sum()}",
    }


def junction_report(
    folder: Path | None = None, cache: Path | None = None, jobs: int = 2
) -> dict[str, pd.DataFrame]:
    """Slide-out and in-sample on the shared spreads (module docstring); with ``folder``, the
    shipped model on that folder's spreads instead, beside the segmentation without it."""
    cache = cache or Path("out/junction_cache")
    off = SegmentationParams(junction_score="off", pixel_classes="off")
    if folder is not None:
        pairs = dapi_pairs(folder)
        tables = {
            "off": end_to_end(pairs, lambda _: off, jobs),
            "junction cuts": end_to_end(
                pairs, lambda _: SegmentationParams(pixel_classes="off"), jobs
            ),
            "shipped defaults (with the pixel classes)": end_to_end(
                pairs, lambda _: SegmentationParams(), jobs
            ),
        }
        return {"figures": pd.DataFrame([summary(t, k) for k, t in tables.items()])}
    pairs = dapi_pairs()
    cuts = cuts_table(pairs, cache, jobs)
    x = cuts[list(FEATURES)].to_numpy(float)
    folds = cache / "folds"
    folds.mkdir(parents=True, exist_ok=True)
    chance = np.zeros(len(cuts))
    for slide in sorted(cuts["slide"].unique()):
        train = (cuts["slide"] != slide).to_numpy()
        model = fit_junction_model(x[train], cuts["right"][train], source=f"all but {slide}")
        model.save(folds / f"{slide}.json")
        chance[~train] = model.probability(x[~train])
    for slide in {d.parent.name for d, _ in pairs} - set(cuts["slide"]):  # no cut offered
        fit_junction_model(x, cuts["right"], source="all").save(folds / f"{slide}.json")
    cuts["slide_out_p"] = chance
    shipped = fit_junction_model(
        x, cuts["right"], source=f"python -m validation dapi --junctions: {len(pairs)} {SOURCE}"
    )
    shipped.save(cache / "junction_model_in-sample.json")
    tables = {
        "off": end_to_end(pairs, lambda _: off, jobs),
        "slide-out": end_to_end(
            pairs,
            lambda s: SegmentationParams(
                junction_model=str(folds / f"{s}.json"), pixel_classes="off"
            ),
            jobs,
        ),
        "in-sample": end_to_end(
            pairs,
            lambda _: SegmentationParams(
                junction_model=str(cache / "junction_model_in-sample.json"), pixel_classes="off"
            ),
            jobs,
        ),
        "shipped defaults (with the pixel classes)": end_to_end(
            pairs, lambda _: SegmentationParams(), jobs
        ),
    }
    taken = cuts["slide_out_p"] >= 0.5
    candidates = pd.DataFrame(
        [
            {
                "cuts offered": len(cuts),
                "right (pieces match more truth)": int(cuts["right"].sum()),
                "taken slide-out": int(taken.sum()),
                "taken and right": int((taken & cuts["right"]).sum()),
                "taken and wrong (fewer matched)": int((taken & (cuts["gain"] < 0)).sum()),
                "net truth chromosomes gained": int(cuts.loc[taken, "gain"].sum()),
                "all cuts taken": int(cuts["gain"].sum()),
                "every right cut taken": int(cuts["gain"].clip(lower=0).sum()),
            }
        ]
    )
    same = np.allclose(shipped.coef, load_junction_model().coef, atol=1e-6)
    return {
        "figures": pd.DataFrame([summary(t, k) for k, t in tables.items()]),
        "cuts": candidates,
        "shipped": pd.DataFrame([{"in-sample model equals data/junction_model.json": same}]),
    }
