"""Study: can a pixel classifier find the overlap regions of DAPI spreads? (It cannot, here.)

An ilastik-style pixel classifier is trained on the overlap pixels of ``K.tif`` (connected 255
areas of >= 0.5 x width^2, the "real overlap regions" of ``validation/segmentation.py``)
against chromosome pixels (classes 1-24, >= 2 px from any 255 pixel), inside the segmented
foreground. Features per pixel, all relative to the spread (intensity / median foreground
signal, scales in chromatid widths ``w``): Gaussian smoothing, both Hessian eigenvalues
(scale-normalised) and the gradient magnitude at sigma = 0.25, 0.5, 1 and 2 w; distance to
the background; foreground density in windows of 2 w and 4 w. Classifier: scikit-learn
``HistGradientBoostingClassifier`` (class-balanced), one probe set (A / P / V) held out in turn.

A kept object (status ``chromosome`` of the default segmentation) is flagged when at least
``c x w^2`` of its pixels have an overlap probability above ``p``. The table counts, over the
held-out spreads, flagged kept objects that cover a real overlap region ("overlap", the
objects still wrongly kept) and flagged kept objects that match one truth chromosome
(mask IoU >= 0.5, "singles lost"):

    .venv/bin/python scripts/study_overlap_pixels.py   # ~2 min on 2 cores

Result in ``docs/validation.md`` (section 2, study table).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scipy.ndimage import binary_dilation  # noqa: E402
from validation.data import dapi_pairs, read_dapi_pair  # noqa: E402
from validation.segmentation import covers_overlap, overlap_regions, truth_ious  # noqa: E402

from napari_chromosome_sort.segmentation import segment_spread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "adir_dapi_spreads"
SCALES = (0.25, 0.5, 1.0, 2.0)
NEGATIVES_PER_SPREAD = 4000


def pixel_features(signal: np.ndarray, foreground: np.ndarray, width: float) -> np.ndarray:
    """(rows, cols, 18) features of each pixel, relative to the spread's signal and width."""
    from scipy import ndimage as ndi
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    level = float(np.median(signal[foreground])) if foreground.any() else 1.0
    rel = signal.astype(float) / max(level, 1e-6)
    channels = []
    for k in SCALES:
        sigma = max(0.7, k * width)
        channels.append(ndi.gaussian_filter(rel, sigma))
        hess = hessian_matrix(rel, sigma=sigma, order="rc", use_gaussian_derivatives=True)
        channels.extend(hessian_matrix_eigvals(hess) * sigma * sigma)
        channels.append(ndi.gaussian_gradient_magnitude(rel, sigma) * sigma)
    channels.append(ndi.distance_transform_edt(foreground) / width)
    for k in (1.0, 2.0):
        channels.append(ndi.uniform_filter(foreground.astype(float), int(2 * k * width) + 1))
    return np.stack(channels, -1).astype(np.float32)


def spread_data(dapi: Path, truth_path: Path) -> dict:
    """Features, training pixels and kept-object categories of one spread."""
    image, truth = read_dapi_pair(dapi, truth_path)
    seg = segment_spread(image)
    labels, width = seg.labels, float(seg.stats["width"])
    foreground = labels > 0
    overlap = truth == 255
    single = (truth > 0) & (truth < 255) & ~binary_dilation(overlap, iterations=2)
    covers = covers_overlap(labels, truth, width)
    best_iou, _ = truth_ious(truth, labels)
    kept = np.array(seg.kept_labels(), int)
    return {
        "name": dapi.name,
        "group": dapi.name[0],
        "features": pixel_features(seg.signal, foreground, width),
        "positive": overlap_regions(truth, width) & foreground,
        "negative": single & foreground,
        "labels": labels,
        "width": width,
        "kept": kept,
        "overlap": covers[kept],
        "single": (best_iou[kept] >= 0.5) & ~covers[kept],
    }


def training_set(spreads: list[dict], rng) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for s in spreads:
        flat = s["features"].reshape(-1, s["features"].shape[-1])
        pos = np.flatnonzero(s["positive"].ravel())
        neg = np.flatnonzero(s["negative"].ravel())
        neg = rng.choice(neg, min(neg.size, NEGATIVES_PER_SPREAD), replace=False)
        xs.append(flat[np.r_[pos, neg]])
        ys.append(np.r_[np.ones(pos.size), np.zeros(neg.size)])
    return np.concatenate(xs), np.concatenate(ys)


def main() -> int:
    from sklearn.ensemble import HistGradientBoostingClassifier

    if not DATA.is_dir():
        print(f"no DAPI data at {DATA}", file=sys.stderr)
        return 1
    spreads = [spread_data(d, t) for d, t in dapi_pairs(DATA)]
    rng = np.random.default_rng(0)
    rows = []
    for group in sorted({s["group"] for s in spreads}):
        x, y = training_set([s for s in spreads if s["group"] != group], rng)
        clf = HistGradientBoostingClassifier(class_weight="balanced", random_state=0).fit(x, y)
        for s in (s for s in spreads if s["group"] == group):
            flat = s["features"].reshape(-1, s["features"].shape[-1])
            proba = clf.predict_proba(flat)[:, 1].reshape(s["labels"].shape)
            for p in (0.5, 0.7, 0.9):
                counts = np.bincount(s["labels"][proba > p], minlength=s["labels"].max() + 1)
                score = counts[s["kept"]] / s["width"] ** 2
                for c in (0.3, 0.5, 1.0, 2.0):
                    flagged = score >= c
                    rows.append(
                        {
                            "p": p,
                            "c": c,
                            "overlap flagged": int(np.sum(flagged & s["overlap"])),
                            "overlap kept": int(np.sum(s["overlap"])),
                            "singles lost": int(np.sum(flagged & s["single"])),
                            "singles": int(np.sum(s["single"])),
                        }
                    )
    table = pd.DataFrame(rows).groupby(["p", "c"]).sum()
    print("kept objects of the default segmentation, one probe set held out in turn")
    print(table.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
