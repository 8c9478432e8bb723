"""The flattening of uneven stain on DAPI spreads: off, and on at three smoothing scales, on every
spread; the setting chosen slide-out (on the other slides, by chromosomes found minus objects on
a real overlap kept as one chromosome) and judged on the slide left out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams

from .segmentation import dapi_table

#: name -> the segmentation's knobs (the rest its shipped defaults; the learned junction cuts,
#: trained on segmentations with the flattening chosen here, stay off)
SETTINGS = {
    "off": {"flatten_brightness": "off", "junction_score": "off"},
    **{
        f"on, 1/{k}": {"flatten_brightness": "on", "flatten_scale": 1 / k, "junction_score": "off"}
        for k in (16, 8, 4)
    },
}


def _score(table: pd.DataFrame) -> int:
    return int(table["found"].sum() - table["overlap_kept"].sum())


def slide_out_choice(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per slide: the setting the other slides choose (ties: the first), and the slide's rows
    under it."""
    rows = []
    first = next(iter(tables.values()))
    for slide in sorted(first["slide"].unique()):
        scores = {name: _score(t[t["slide"] != slide]) for name, t in tables.items()}
        chosen = max(scores, key=scores.get)
        held = tables[chosen]
        rows.append(held[held["slide"] == slide].assign(chosen=chosen))
    return pd.concat(rows, ignore_index=True)


def _found(table: pd.DataFrame) -> dict:
    """Share of truth chromosomes found per slide group and over all."""
    return {
        f"found {g}": round(sub["found"].sum() / sub["boxes"].sum(), 3)
        for g, sub in [*table.groupby("group"), ("all", table)]
    }


def _summary(table: pd.DataFrame, name: str) -> dict:
    worst = table.loc[table["recall"].idxmin()]
    kept, on_overlap = table["overlap_kept"].sum(), table["overlap_objects"].sum()
    return {
        "figure": name,
        **_found(table),
        "worst spread": f"{worst['spread']} ({worst['recall']:.2f})",
        "overlap objects kept": f"{kept} of {on_overlap}",
        "crossings resolved": f"{table['crossings_resolved'].sum()} of {table['crossings'].sum()}",
        "score": _score(table),
    }


def flatten_report(folder: Path | None = None, jobs: int = 2) -> dict[str, pd.DataFrame]:
    """Each setting on every spread of ``folder``, the slide-out choice and naive Otsu."""
    tables = {
        name: dapi_table(jobs=jobs, params=replace(SegmentationParams(), **knobs), folder=folder)
        for name, knobs in SETTINGS.items()
    }
    chosen = slide_out_choice(tables)
    off = tables["off"]
    naive = off.assign(found=off["naive_recall"] * off["boxes"])
    summary = pd.DataFrame(
        [
            *(_summary(t, name) for name, t in tables.items()),
            _summary(chosen, "chosen slide-out"),
            {"figure": "naive Otsu", **_found(naive)},
        ]
    )
    picks = chosen.groupby("slide")["chosen"].first().value_counts()
    picks = picks.rename_axis("setting").rename("held-out slides").reset_index()
    return {"summary": summary, "chosen": picks, "per_spread": chosen}
