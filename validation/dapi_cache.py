"""Per-spread cache of DAPI segmentations, so held-out sweeps segment each spread once per setting.

A cached entry holds the label image, the objects (label, status, n_parts, reason) and the
spread's median object and chromatid width of :func:`segment_spread` with the learned crossing
score and crossing resolution off (both are applied afterwards by
:func:`~napari_chromosome_sort.segmentation.crossings.detect.finish_crossings`, so one entry serves
every crossing setting), and, once per spread, the corrected signal.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread

from .data import read_dapi_pair

#: what the cached segmentation leaves to the crossing steps run afterwards; the held-out grids
#: judge the rules' constants and the learned steps without the flattening of uneven stain (it
#: is judged on its own: ``python -m validation dapi --flatten``)
CACHE_BASE = {
    "crossing_score": "off",
    "resolve_crossings": False,
    "flatten_brightness": "off",
    "junction_score": "off",
}


def setting_key(point: dict) -> str:
    """A short stable name of a setting (``split_by_outline`` named only when on)."""
    point = {k: v for k, v in point.items() if not (k == "split_by_outline" and v is False)}
    text = json.dumps(point, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def cached_segmentation(dapi: Path, truth_path: Path, point: dict, cache: Path) -> dict:
    """``labels``, ``objects`` (DataFrame), ``median_area``, ``width``, ``signal``, ``truth``
    of one spread segmented with ``point`` (segmented and stored when not cached yet)."""
    folder = cache / dapi.stem
    entry = folder / f"{setting_key(point)}.npz"
    signal_file = folder / "signal.npz"
    _, truth = read_dapi_pair(dapi, truth_path)
    if not (entry.exists() and signal_file.exists()):
        image, _ = read_dapi_pair(dapi, truth_path)
        seg = segment_spread(image, SegmentationParams(**{**point, **CACHE_BASE}))
        folder.mkdir(parents=True, exist_ok=True)
        objects = seg.objects[["label", "status", "reason", "n_parts"]]
        tmp = entry.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            labels=seg.labels,
            table=np.array(objects.to_json(orient="records")),
            median_area=seg.stats.get("median_area", 1.0),
            width=seg.stats.get("width", 4.0),
        )
        tmp.replace(entry)
        if not signal_file.exists():
            tmp = signal_file.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, signal=seg.signal.astype(np.float32))
            tmp.replace(signal_file)
    with np.load(entry) as z:
        out = {
            "labels": z["labels"],
            "objects": pd.read_json(io.StringIO(str(z["table"])), orient="records"),
            "median_area": float(z["median_area"]),
            "width": float(z["width"]),
        }
    with np.load(signal_file) as z:
        out["signal"] = z["signal"]
    out["truth"] = truth
    out["name"] = dapi.stem
    return out


def _fill(args) -> str:
    dapi, truth_path, point, cache = args
    cached_segmentation(dapi, truth_path, point, cache)
    return dapi.stem


def fill_cache(pairs, points: list[dict], cache: Path, jobs: int = 2) -> None:
    """Segment every spread of ``pairs`` with every setting of ``points`` into ``cache``."""
    from concurrent.futures import ProcessPoolExecutor

    work = [(d, t, p, cache) for p in points for d, t in pairs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for _ in pool.map(_fill, work):
            pass
