"""Build a real mitotic-vs-interphase tile set from the shared spreads.

    python scripts/make_mitotic_tiles.py --data ../shared/data --out out/mitotic_tiles

* Giemsa DDX11-/- spreads (3): chromosome positions from the YOLO boxes; mitotic tiles are
  centred on chromosome-dense points (>= 8 boxes in the tile); interphase tiles on large round
  dark blobs (Otsu on the inverted grey image, area/solidity filter) that hold no box.
* DAPI ADIR spreads (<slide>/<img>D.tif with K.tif truth): mitotic tiles centred on
  chromosome-dense points of the K truth (> 0); interphase tiles on large round bright blobs
  (Otsu, area >= 2500 px, solidity >= 0.85) of which < 5 % are K-truth chromosome pixels.
  Spreads without K.tif are skipped (no truth).

Writes ``OUT/{mitotic,interphase}/<name>.png`` (128 x 128, RGB for Giemsa, grey for DAPI) and
``OUT/manifest.csv`` (file, class, modality, slide, spread, cy, cx, side) so a validation can split
by slide/spread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters, measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from napari_chromosome_sort.io import read_image  # noqa: E402

TILE = 128


def _tile(image: np.ndarray, cy: float, cx: float, side: int) -> np.ndarray:
    """Square window centred on (cy, cx), shifted to stay inside the image, resized to TILE."""
    h, w = image.shape[:2]
    side = min(side, h, w)
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    crop = image[y0 : y0 + side, x0 : x0 + side]
    return np.asarray(Image.fromarray(crop).resize((TILE, TILE), Image.BILINEAR))


def _blobs(signal: np.ndarray, min_area: int, min_solidity: float, sigma: float):
    g = filters.gaussian(signal.astype(float), sigma, preserve_range=True)
    mask = g > filters.threshold_otsu(g)
    mask = ndi.binary_fill_holes(mask)
    lab = measure.label(mask)
    return lab, [
        r for r in measure.regionprops(lab) if r.area >= min_area and r.solidity >= min_solidity
    ]


def _dense_centres(points: np.ndarray, side: int, min_count: int, n: int, rng, shape):
    """Up to ``n`` centres drawn from ``points`` whose side x side window holds >= min_count."""
    out = []
    order = rng.permutation(len(points))
    h, w = shape
    for i in order:
        cy, cx = points[i]
        cy = float(np.clip(cy, side / 2, h - side / 2))
        cx = float(np.clip(cx, side / 2, w - side / 2))
        inside = (np.abs(points[:, 0] - cy) < side / 2) & (np.abs(points[:, 1] - cx) < side / 2)
        if inside.sum() < min_count:
            continue
        if any(abs(cy - a) < side / 3 and abs(cx - b) < side / 3 for a, b in out):
            continue
        out.append((cy, cx))
        if len(out) >= n:
            break
    return out


def giemsa_tiles(folder: Path, rng, side: int = 256, per_spread: int = 12):
    rows = []
    for img_path in sorted((folder / "images").glob("*.png")):
        image = read_image(img_path)
        h, w = image.shape[:2]
        boxes = np.loadtxt(folder / "labels" / f"{img_path.stem}.txt", ndmin=2)
        centres = np.stack([boxes[:, 2] * h, boxes[:, 1] * w], axis=1)
        spread = f"giemsa_{img_path.stem}"
        for k, (cy, cx) in enumerate(_dense_centres(centres, side, 8, per_spread, rng, (h, w))):
            rows.append(("mitotic", _tile(image, cy, cx, side), spread, spread, cy, cx, side, k))
        grey = image.mean(axis=2)
        lab, regions = _blobs(grey.max() - grey, 8000, 0.85, 3)
        box_mask = np.zeros((h, w), bool)
        for _, bx, by, bw, bh in boxes:
            box_mask[
                int(max(0, (by - bh / 2) * h)) : int((by + bh / 2) * h),
                int(max(0, (bx - bw / 2) * w)) : int((bx + bw / 2) * w),
            ] = True
        k = 0
        for r in regions:
            if box_mask[lab == r.label].mean() > 0.02:
                continue
            cy, cx = r.centroid
            nuc_side = int(max(side, 1.3 * r.equivalent_diameter_area))
            for dy, dx in [(0, 0), tuple(rng.normal(0, 15, 2))]:
                rows.append(
                    (
                        "interphase",
                        _tile(image, cy + dy, cx + dx, nuc_side),
                        spread,
                        spread,
                        cy + dy,
                        cx + dx,
                        nuc_side,
                        k,
                    )
                )
                k += 1
    return rows, "giemsa"


def dapi_tiles(folder: Path, rng, side: int = 160, per_spread: int = 3):
    rows = []
    for d_path in sorted(folder.glob("*/*D.tif")):
        k_path = d_path.with_name(d_path.name[:-5] + "K.tif")
        if not k_path.exists():
            continue
        image = read_image(d_path)
        if image.ndim == 3:
            image = image.mean(axis=2)
        image = np.asarray(image, dtype=np.float32)
        image = np.clip(255 * (image - image.min()) / max(np.ptp(image), 1), 0, 255).astype(
            np.uint8
        )
        truth = read_image(k_path) > 0
        h, w = image.shape
        slide, spread = d_path.parent.name, d_path.stem[:-1]
        pts = np.argwhere(truth)[::25].astype(float)
        # "dense" = the window holds >= 6 % chromosome pixels (in 25-px-subsampled points)
        min_count = int(0.06 * side * side / 25)
        lab, regions = _blobs(image, 2500, 0.85, 2)
        nuclei = np.isin(lab, [r.label for r in regions]) & ~truth
        centres = _dense_centres(pts, side, min_count, 3 * per_spread, rng, (h, w))
        k = 0
        for cy, cx in centres:  # mitotic windows must not be mostly nucleus
            y0, x0 = int(max(0, cy - side / 2)), int(max(0, cx - side / 2))
            if nuclei[y0 : y0 + side, x0 : x0 + side].mean() > 0.08 or k >= per_spread:
                continue
            rows.append(("mitotic", _tile(image, cy, cx, side), slide, spread, cy, cx, side, k))
            k += 1
        k = 0
        for r in regions:
            if truth[lab == r.label].mean() >= 0.05:
                continue
            cy, cx = r.centroid
            nuc_side = int(max(side, 1.3 * r.equivalent_diameter_area))
            for dy, dx in [(0, 0), tuple(rng.normal(0, 10, 2))]:
                rows.append(
                    (
                        "interphase",
                        _tile(image, cy + dy, cx + dx, nuc_side),
                        slide,
                        spread,
                        cy + dy,
                        cx + dx,
                        nuc_side,
                        k,
                    )
                )
                k += 1
    return rows, "dapi"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", default=str(repo.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(repo / "out" / "mitotic_tiles"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    rng = np.random.default_rng(args.seed)
    records = []
    for rows, modality in (
        giemsa_tiles(data / "giemsa_spreads_ddx11", rng),
        dapi_tiles(data / "adir_dapi_spreads", rng),
    ):
        for cls, tile, slide, spread, cy, cx, side, k in rows:
            folder = out / cls
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{modality}_{spread}_{cls[0]}{k:02d}.png"
            Image.fromarray(tile).save(folder / name)
            records.append(
                dict(
                    file=f"{cls}/{name}",
                    **{"class": cls},
                    modality=modality,
                    slide=slide,
                    spread=spread,
                    cy=round(cy, 1),
                    cx=round(cx, 1),
                    side=side,
                )
            )
    manifest = pd.DataFrame(records)
    manifest.to_csv(out / "manifest.csv", index=False)
    print(manifest.groupby(["modality", "class"]).size().to_string())
    print(f"{len(manifest)} tiles from {manifest['spread'].nunique()} spreads -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
