"""Segmentation on degraded copies of the real spreads: does it hold up on images unlike ours?

Other labs' spreads differ from the shared ones in resolution, camera noise, compression and
contrast. Each spread is degraded in one way at a time and segmented with the default
parameters; the figures are those of ``scripts/validate_segmentation.py`` (Giemsa: annotated
boxes matched by kept objects; DAPI: truth chromosomes found as single kept objects, real
overlap regions flagged ``cluster``). Truth is resampled with the image (boxes scaled, K.tif
nearest-neighbour).

    .venv/bin/python scripts/validate_robustness.py [--dapi-every 3] [--jobs 2] [--classify M]

With ``--classify MODEL`` (a ``chromosort train`` model) every degraded Giemsa spread is also
classified end to end (``predict_spread`` defaults) and the calls of the kept objects matched to
a box are compared with the box classes.

Degradations: ``scale0.5`` etc. (anti-aliased resampling), ``noise5`` etc. (Gaussian noise of
that many grey levels on 8-bit Giemsa; on DAPI a percentage of the 99.9th percentile,
``noise3`` = 3 %), ``photons100`` / ``photons30`` (DAPI: photon noise of a dim exposure, the
99.9th percentile at 100 or 30 photons), ``jpeg70`` (JPEG quality 70), ``gamma0.7`` /
``gamma1.5`` (contrast curve),
``grey`` (RGB averaged to one channel), ``gradient`` / ``vignette`` (uneven illumination:
the light falls by 40 % from left to right, or towards the corners).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

from validate_segmentation import (  # noqa: E402
    box_iou,
    dapi_pairs,
    dapi_stats,
    giemsa_spreads,
    giemsa_stats,
    greedy_match,
    read_dapi_pair,
)

GIEMSA = ("none", "scale0.5", "scale0.75", "scale1.5", "noise5", "noise10", "noise20", "jpeg70",
          "gamma0.7", "gamma1.5", "grey", "gradient", "vignette")  # fmt: skip
DAPI = ("none", "scale0.5", "scale0.75", "scale1.5", "noise3", "noise6", "photons100",
        "photons30", "gamma0.7", "gradient", "vignette")  # fmt: skip


def degrade(image: np.ndarray, how: str, noise_unit: float = 1.0) -> tuple[np.ndarray, float]:
    """(degraded copy, scale factor). ``noise_unit``: grey levels per noise step."""
    from PIL import Image
    from skimage.transform import rescale

    dtype = image.dtype
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None
    x = image.astype(np.float64)
    scale = 1.0
    if how == "none":
        return image, scale
    if how.startswith("scale"):
        scale = float(how[5:])
        axis = -1 if x.ndim == 3 else None
        x = rescale(x, scale, anti_aliasing=True, preserve_range=True, channel_axis=axis)
    elif how.startswith("noise"):
        rng = np.random.default_rng(0)
        x = x + rng.normal(0.0, float(how[5:]) * noise_unit, x.shape)
    elif how.startswith("photons"):
        # a dim exposure: photon (Poisson) noise with the 99.9th percentile at that many photons
        peak = float(np.quantile(x, 0.999)) or 1.0
        photons = float(how[7:])
        rng = np.random.default_rng(0)
        x = rng.poisson(np.clip(x, 0, None) / peak * photons) * (peak / photons)
    elif how.startswith("gamma"):
        peak = float(np.quantile(x, 0.999)) or 1.0
        x = peak * (np.clip(x, 0, None) / peak) ** float(how[5:])
    elif how.startswith("jpeg"):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(how[4:]))
        return np.asarray(Image.open(buffer)), scale
    elif how in ("gradient", "vignette"):
        # uneven illumination: 40 % falloff left to right, or towards the corners
        h, w = x.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        if how == "gradient":
            gain = 1.0 - 0.4 * xx / max(w - 1, 1)
        else:
            r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
            gain = 1.0 - 0.2 * r2
        x = x * (gain[..., None] if x.ndim == 3 else gain)
    elif how == "grey":
        x = x.mean(axis=-1) if x.ndim == 3 else x
    else:
        raise ValueError(f"unknown degradation {how!r}")
    return np.clip(x, 0, top).astype(dtype), scale


def _giemsa_one(job) -> dict:
    path, image, boxes, how, model_path = job
    degraded, scale = degrade(image, how)
    scaled = boxes.copy()
    scaled[:, 1:] *= scale
    row = {"degradation": how, **giemsa_stats(degraded, scaled, path.name)}
    if model_path is not None:
        row.update(_calls_vs_boxes(model_path, degraded, scaled))
    return row


def _calls_vs_boxes(model_path: Path, image: np.ndarray, boxes: np.ndarray) -> dict:
    """Classify the spread; kept objects matched one-to-one to a box (IoU >= 0.5): how many
    carry the box's class (box classes 0, 1, 2 = the model's classes in order, A, B, C)."""
    from napari_chromosome_sort.model_io import load_model
    from napari_chromosome_sort.predict import predict_spread

    model = load_model(model_path)
    table = predict_spread(model, image).table
    kept = table[["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].to_numpy(float)
    pairs = greedy_match(box_iou(boxes[:, 1:], kept))
    agree = sum(model.classes[int(boxes[i, 0])] == table["class"].iloc[j] for i, j in pairs)
    return {"called": len(pairs), "agree": int(agree)}


def _dapi_one(job) -> dict:
    from skimage.transform import rescale

    dapi, truth_path, how = job
    image, truth = read_dapi_pair(dapi, truth_path)
    unit = 0.01 * float(np.quantile(image, 0.999))
    degraded, scale = degrade(image, how, noise_unit=unit)
    if scale != 1.0:
        truth = rescale(truth, scale, order=0, preserve_range=True, anti_aliasing=False)
        truth = truth.astype(np.uint8)
    return {"degradation": how, **dapi_stats(degraded, truth, dapi.name)}


def _summary(rows: list[dict], columns: dict[str, tuple[str, str]]) -> pd.DataFrame:
    table = pd.DataFrame(rows).groupby("degradation", sort=False).sum(numeric_only=True)
    out = pd.DataFrame(index=table.index)
    for name, (num, den) in columns.items():
        out[name] = [
            f"{a}/{b} ({a / max(b, 1):.3f})" for a, b in zip(table[num], table[den], strict=True)
        ]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dapi-every", type=int, default=3, help="every Nth DAPI spread")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--classify", type=Path, default=None, help="model: also classify Giemsa")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    pd.set_option("display.width", 200)
    with ProcessPoolExecutor(args.jobs) as pool:
        giemsa = args.data / "giemsa_spreads_ddx11"
        if giemsa.exists():
            spreads = giemsa_spreads(giemsa)
            jobs = [(p, im, b, how, args.classify) for how in GIEMSA for p, im, b in spreads]
            rows = list(pool.map(_giemsa_one, jobs))
            print("## Giemsa (3 spreads): boxes matched by kept objects")
            table = _summary(rows, {"boxes matched": ("matched", "boxes")})
            sums = pd.DataFrame(rows).groupby("degradation", sort=False).sum(numeric_only=True)
            table["kept unmatched"] = sums["kept_unmatched"]
            table["nuclei"] = sums["nuclei"]
            if args.classify is not None:
                table["calls agreeing with the box"] = _summary(rows, {"x": ("agree", "called")})[
                    "x"
                ]
            print(table.to_string())
        dapi = args.data / "adir_dapi_spreads"
        if dapi.exists():
            pairs = dapi_pairs(dapi)[:: args.dapi_every]
            rows = list(pool.map(_dapi_one, [(d, k, how) for how in DAPI for d, k in pairs]))
            print(f"\n## DAPI ({len(pairs)} spreads, every {args.dapi_every}th)")
            table = _summary(
                rows,
                {
                    "truth chromosomes found": ("found", "truth"),
                    "overlap regions -> cluster": ("ov_region_cluster", "ov_region_objects"),
                },
            )
            sums = pd.DataFrame(rows).groupby("degradation", sort=False).sum(numeric_only=True)
            table["kept off truth"] = sums["kept_off_truth"]
            print(table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
