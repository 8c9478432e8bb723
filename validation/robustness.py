"""Segmentation on degraded copies of the real spreads: images unlike ours.

Other labs' spreads differ from the shared ones in resolution, camera noise, compression,
contrast and lighting. Each spread is degraded one way at a time and segmented with the default
settings; the truth is resampled with the image (boxes scaled, K.tif nearest-neighbour). The
naive baseline runs on the same degraded image.
"""

from __future__ import annotations

import io
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from .data import AnnotatedSpread, dapi_pairs, giemsa_spreads, read_dapi_pair
from .segmentation import dapi_stats, giemsa_row

GIEMSA = ("none", "scale0.5", "scale0.75", "scale1.5", "noise5", "noise10", "noise20", "jpeg70",
          "gamma0.7", "gamma1.5", "grey", "gradient", "vignette")  # fmt: skip
DAPI = ("none", "scale0.5", "scale0.75", "scale1.5", "noise3", "noise6", "photons100",
        "photons30", "gamma0.7", "gradient", "vignette")  # fmt: skip


def degrade(image: np.ndarray, how: str, noise_unit: float = 1.0) -> tuple[np.ndarray, float]:
    """(degraded copy, scale factor). ``scale<f>``: resampled; ``noise<s>``: Gaussian noise of
    ``s`` x ``noise_unit`` grey levels; ``photons<n>``: photon noise of a dim exposure (the 99.9th
    percentile at n photons); ``jpeg<q>``; ``gamma<g>``; ``grey``: RGB averaged; ``gradient`` /
    ``vignette``: the light falls by 40 % left to right, or towards the corners."""
    from PIL import Image
    from skimage.transform import rescale

    dtype = image.dtype
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None
    x = image.astype(np.float64)
    scale = 1.0
    rng = np.random.default_rng(0)
    if how == "none":
        return image, scale
    if how.startswith("scale"):
        scale = float(how[5:])
        axis = -1 if x.ndim == 3 else None
        x = rescale(x, scale, anti_aliasing=True, preserve_range=True, channel_axis=axis)
    elif how.startswith("noise"):
        x = x + rng.normal(0.0, float(how[5:]) * noise_unit, x.shape)
    elif how.startswith("photons"):
        peak = float(np.quantile(x, 0.999)) or 1.0
        photons = float(how[7:])
        x = rng.poisson(np.clip(x, 0, None) / peak * photons) * (peak / photons)
    elif how.startswith("gamma"):
        peak = float(np.quantile(x, 0.999)) or 1.0
        x = peak * (np.clip(x, 0, None) / peak) ** float(how[5:])
    elif how.startswith("jpeg"):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(how[4:]))
        return np.asarray(Image.open(buffer)), scale
    elif how in ("gradient", "vignette"):
        h, w = x.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        if how == "gradient":
            gain = 1.0 - 0.4 * xx / max(w - 1, 1)
        else:
            gain = 1.0 - 0.2 * (((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2)
        x = x * (gain[..., None] if x.ndim == 3 else gain)
    elif how == "grey":
        x = x.mean(axis=-1) if x.ndim == 3 else x
    else:
        raise ValueError(f"unknown degradation {how!r}")
    return np.clip(x, 0, top).astype(dtype), scale


def _giemsa_one(job) -> dict:
    spread, how = job
    image, scale = degrade(spread.image, how)
    boxes = spread.boxes.copy()
    boxes[:, 1:] *= scale
    return {"degradation": how, **giemsa_row(AnnotatedSpread(spread.name, image, boxes))}


def _dapi_one(job) -> dict:
    from skimage.transform import rescale

    dapi, truth_path, how = job
    image, truth = read_dapi_pair(dapi, truth_path)
    degraded, scale = degrade(image, how, noise_unit=0.01 * float(np.quantile(image, 0.999)))
    if scale != 1.0:
        truth = rescale(truth, scale, order=0, preserve_range=True, anti_aliasing=False)
        truth = truth.astype(np.uint8)
    return {"degradation": how, **dapi_stats(degraded, truth, dapi.name)}


def _per_degradation(rows: list[dict]) -> pd.DataFrame:
    """Pooled found / total and the naive baseline's recall per degradation."""
    table = pd.DataFrame(rows)
    table["naive_found"] = table["naive_recall"] * table["boxes"]
    sums = table.groupby("degradation", sort=False)[["boxes", "found", "naive_found"]].sum()
    worst = table.groupby("degradation", sort=False)["recall"].min()
    return pd.DataFrame(
        {
            "found": sums["found"].astype(int),
            "of": sums["boxes"].astype(int),
            "recall": sums["found"] / sums["boxes"],
            "worst_spread_recall": worst,
            "naive_recall": sums["naive_found"] / sums["boxes"],
        }
    ).reset_index()


def robustness_tables(dapi_every: int = 6, jobs: int = 2) -> dict[str, pd.DataFrame]:
    """Giemsa (all annotated spreads) and DAPI (every ``dapi_every``-th) under each degradation."""
    spreads = giemsa_spreads()
    pairs = dapi_pairs()[::dapi_every]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        giemsa = list(pool.map(_giemsa_one, [(s, how) for how in GIEMSA for s in spreads]))
        dapi = list(pool.map(_dapi_one, [(d, k, how) for how in DAPI for d, k in pairs]))
    return {"giemsa": _per_degradation(giemsa), "dapi": _per_degradation(dapi)}
