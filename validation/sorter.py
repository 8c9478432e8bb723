"""The whole-image sorter on real mitotic vs interphase tiles, split by slide or spread.

Tiles (:func:`make_tiles`) are cut from the shared spreads:

* Giemsa DDX11-/- spreads: mitotic tiles centred on chromosome-dense points (>= 8 YOLO boxes in
  the tile); interphase tiles on large round dark blobs (Otsu on the inverted grey image,
  area/solidity filter) that hold no box.
* ADIR DAPI spreads with K.tif truth: mitotic tiles centred on chromosome-dense points of the
  truth; interphase tiles on large round bright blobs (Otsu, area >= 2500 px, solidity >= 0.85)
  of which < 5 % are truth chromosome pixels.

:func:`sorter_report` holds each group (a DAPI slide folder or a Giemsa spread; or a whole
stain) out in one of K folds (GroupKFold), trains a squeezenet1_1 sorter on the tiles of the
other groups only, sorts the held-out tiles with ``sorter.sort_folder`` exactly as a user would
(copies into class folders) and reports accuracy, Cohen's kappa, per-stain accuracy and the
confusion matrix.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters, measure

from napari_chromosome_sort.files.io import read_image

from .data import dapi_dir, giemsa_dir, squeezenet_weights

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


def _interphase_rows(image, nuclei, side: int, jitter: float, slide, spread, rng) -> list:
    """Two interphase tiles per nucleus (on its centre and shifted by ``jitter`` px, normal),
    each at least ``side`` and 1.3 nucleus diameters wide; rows as :func:`giemsa_tiles`."""
    rows, k = [], 0
    for r in nuclei:
        cy, cx = r.centroid
        nuc_side = int(max(side, 1.3 * r.equivalent_diameter_area))
        for dy, dx in [(0, 0), tuple(rng.normal(0, jitter, 2))]:
            tile = _tile(image, cy + dy, cx + dx, nuc_side)
            rows.append(("interphase", tile, slide, spread, cy + dy, cx + dx, nuc_side, k))
            k += 1
    return rows


def giemsa_tiles(folder: Path, rng, side: int = 256, per_spread: int = 12):
    """Mitotic tiles on chromosome-dense points of the YOLO boxes, interphase tiles on large
    round dark blobs holding no box; rows (class, tile, slide, spread, cy, cx, side, k)."""
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
        nuclei = [r for r in regions if box_mask[lab == r.label].mean() <= 0.02]
        rows += _interphase_rows(image, nuclei, side, 15, spread, spread, rng)
    return rows, "giemsa"


def dapi_tiles(folder: Path, rng, side: int = 160, per_spread: int = 3):
    """Mitotic tiles on chromosome-dense points of the K.tif truth (not mostly nucleus),
    interphase tiles on large round bright blobs of < 5 % truth pixels; rows as
    :func:`giemsa_tiles`."""
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
        nuclei = [r for r in regions if truth[lab == r.label].mean() < 0.05]
        rows += _interphase_rows(image, nuclei, side, 10, slide, spread, rng)
    return rows, "dapi"


def make_tiles(out: Path, seed: int = 0) -> pd.DataFrame:
    """Write ``out/{mitotic,interphase}/<name>.png`` (128 x 128, RGB for Giemsa, grey for DAPI)
    and ``out/manifest.csv`` (file, class, modality, slide, spread, cy, cx, side)."""
    rng = np.random.default_rng(seed)
    records = []
    for rows, modality in (giemsa_tiles(giemsa_dir(), rng), dapi_tiles(dapi_dir(), rng)):
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
    return manifest


def sorter_report(
    tiles: Path | None = None,
    folds: int = 4,
    group_by: str = "slide",
    views: int = 2,
    figures: Path | None = None,
) -> dict[str, pd.DataFrame]:
    """Held-out accuracy of the sorter on the tiles in ``tiles`` (made there first when it has
    no ``manifest.csv``; in a temporary folder without ``tiles``)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tiles) if tiles else Path(tmp) / "tiles"
        if not (folder / "manifest.csv").exists():
            make_tiles(folder)
        return _cross_validate(folder, folds, group_by, views, figures)


def _cross_validate(tiles: Path, folds, group_by, views, figures) -> dict[str, pd.DataFrame]:
    import torch
    from sklearn.model_selection import GroupKFold

    from napari_chromosome_sort.analysis import metrics, plots
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.sorter import (
        load_rgb,
        sort_folder,
        sorter_config,
        train_sorter_images,
    )

    torch.set_num_threads(1)
    manifest = pd.read_csv(tiles / "manifest.csv")
    classes = sorted(manifest["class"].unique())
    groups = np.where(manifest["modality"] == "giemsa", manifest["spread"], manifest["slide"])
    if group_by == "modality":
        groups, folds = manifest["modality"].to_numpy(), 2
    y = manifest["class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    images = [load_rgb(tiles / f) for f in manifest["file"]]
    pred = np.empty(len(manifest), dtype=object)
    conf = np.zeros(len(manifest))
    truth = manifest["class"].to_numpy()
    config = sorter_config(backbone="squeezenet1_1", weights=str(squeezenet_weights()), views=views)
    fold_rows = []
    for k, (tr, te) in enumerate(GroupKFold(folds).split(images, y, groups)):
        model = run_to_end(train_sorter_images([images[i] for i in tr], y[tr], classes, config))
        # sort the held-out tiles exactly as a user would (copies into class folders)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in"
            src.mkdir()
            for i in te:
                shutil.copy2(tiles / manifest["file"].iloc[i], src / f"{i:05d}.png")
            table = run_to_end(sort_folder(model, src, Path(tmp) / "sorted")).table
            idx = [int(Path(f).stem) for f in table["file"]]
            pred[idx] = table["class"].to_numpy()
            conf[idx] = table["confidence"].to_numpy()
        fold_rows.append(
            {
                "fold": k,
                "groups_held_out": len(set(groups[te])),
                "tiles": len(te),
                "accuracy": float((pred[te] == truth[te]).mean()),
            }
        )
    report = metrics.evaluate(list(truth), list(pred), classes)
    stains = sorted(manifest["modality"].unique())
    summary = {
        "tiles": int(len(manifest)),
        "groups": int(len(set(groups))),
        "folds": folds,
        "held_out": group_by,
        "accuracy": report["accuracy"],
        "kappa": report["kappa"],
        **{
            f"accuracy_{m}": float(
                (pred[manifest["modality"] == m] == truth[manifest["modality"] == m]).mean()
            )
            for m in stains
        },
        "review_share_at_0.6": float((conf < 0.6).mean()),
        "accuracy_above_0.6": float((pred[conf >= 0.6] == truth[conf >= 0.6]).mean()),
    }
    if figures is not None:
        plots.save_figure(
            plots.confusion_matrix_plot(
                report["confusion"]["counts"], classes, "Sorter: held-out slides"
            ),
            Path(figures) / f"readout_sorter_confusion_{group_by}",
            ("png",),
        )
    confusion = pd.DataFrame(report["confusion"]["counts"], columns=classes)
    confusion.insert(0, "true", classes)
    return {
        "summary": pd.DataFrame([summary]),
        "folds": pd.DataFrame(fold_rows),
        "confusion": confusion,
    }
