"""Validate segmentation on the real spreads in ../shared/data (see docs/validation.md).

Usage: .venv/bin/python scripts/validate_segmentation.py [--data ../shared/data] [--dapi-limit N]

1. Giemsa DDX11-/- spreads with YOLO boxes: recall of annotated chromosomes by objects with status
   ``chromosome`` (bbox IoU >= 0.5, one-to-one greedy), kept objects matching no box, nuclei kept.
2. DAPI spreads with K.tif karyotype truth: truth chromosomes (connected pieces of one class,
   overlap pixels 255 excluded) found as a single kept object (mask IoU >= 0.5), and the fraction of
   objects covering overlap pixels that are flagged ``cluster`` (or not kept).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_chromosome_sort.io import read_image  # noqa: E402
from napari_chromosome_sort.segmentation import segment_spread  # noqa: E402


def read_yolo_boxes(path: Path, shape) -> np.ndarray:
    """YOLO ``class cx cy w h`` (normalised) -> int array (n, 5): cls, y0, x0, y1, x1."""
    h, w = shape[:2]
    rows = []
    for line in Path(path).read_text().split("\n"):
        parts = line.split()
        if len(parts) < 5:
            continue
        c, cx, cy, bw, bh = (float(v) for v in parts[:5])
        rows.append(
            (int(c), (cy - bh / 2) * h, (cx - bw / 2) * w, (cy + bh / 2) * h, (cx + bw / 2) * w)
        )
    return np.array(rows, float).reshape(-1, 5)


def box_iou(a, b) -> np.ndarray:
    """IoU matrix between boxes a (n,4) and b (m,4) as y0,x0,y1,x1."""
    a = np.asarray(a, float)[:, None, :]
    b = np.asarray(b, float)[None, :, :]
    iy = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ix = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iy * ix
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def greedy_match(iou: np.ndarray, thr: float = 0.5) -> list[tuple[int, int]]:
    pairs = []
    if iou.size == 0:
        return pairs
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
    used_a, used_b = set(), set()
    for i, j in order:
        if iou[i, j] < thr:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((int(i), int(j)))
    return pairs


def giemsa_stats(image: np.ndarray, boxes: np.ndarray, name: str, params=None) -> dict:
    """Recall of the YOLO ``boxes`` (n, 5: cls, y0, x0, y1, x1) by kept objects of ``image``."""
    t0 = time.perf_counter()
    seg = segment_spread(image, params)
    seconds = time.perf_counter() - t0
    obj = seg.objects
    kept = obj[obj["status"] == "chromosome"]
    kept_boxes = kept[["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].to_numpy(float)
    matches = greedy_match(box_iou(boxes[:, 1:], kept_boxes))
    # a nucleus kept as chromosome: a kept object much larger than the largest annotated box
    box_areas = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
    kept_areas = (kept_boxes[:, 2] - kept_boxes[:, 0]) * (kept_boxes[:, 3] - kept_boxes[:, 1])
    nuclei_kept = int(np.sum(kept_areas > 4 * box_areas.max())) if len(kept_areas) else 0
    return {
        "image": name,
        "boxes": len(boxes),
        "matched": len(matches),
        "recall": len(matches) / max(len(boxes), 1),
        "kept": len(kept),
        "kept_unmatched": len(kept) - len(matches),
        "nuclei": int((obj["status"] == "nucleus").sum()),
        "nucleus_kept": nuclei_kept,
        "cluster": int((obj["status"] == "cluster").sum()),
        "type_c_recall": _class_recall(boxes, matches, 2),
        "seconds": round(seconds, 2),
    }


def giemsa_spreads(root: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(path, image, boxes) of each annotated Giemsa spread."""
    out = []
    for image_path in sorted((root / "images").glob("*.png")):
        image = read_image(image_path)
        boxes = read_yolo_boxes(root / "labels" / f"{image_path.stem}.txt", image.shape)
        out.append((image_path, image, boxes))
    return out


def giemsa_table(root: Path, params=None) -> pd.DataFrame:
    rows = [giemsa_stats(im, boxes, p.name, params) for p, im, boxes in giemsa_spreads(root)]
    table = pd.DataFrame(rows)
    total = {
        "image": "ALL",
        "boxes": table["boxes"].sum(),
        "matched": table["matched"].sum(),
        "recall": table["matched"].sum() / max(table["boxes"].sum(), 1),
        "kept": table["kept"].sum(),
        "kept_unmatched": table["kept_unmatched"].sum(),
        "nuclei": table["nuclei"].sum(),
        "nucleus_kept": table["nucleus_kept"].sum(),
        "cluster": table["cluster"].sum(),
        "type_c_recall": np.nan,
        "seconds": table["seconds"].mean(),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def _class_recall(boxes, matches, cls) -> float:
    idx = np.flatnonzero(boxes[:, 0] == cls)
    if idx.size == 0:
        return float("nan")
    matched = {i for i, _ in matches}
    return float(np.mean([i in matched for i in idx]))


def dapi_pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for dapi in sorted(root.glob("*/*D.tif")):
        truth = dapi.with_name(dapi.name[:-5] + "K.tif")
        if truth.exists():
            pairs.append((dapi, truth))
    return pairs


def read_dapi_pair(dapi: Path, truth_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The DAPI image and its K.tif truth (classes 1-24, overlap 255) as a 2-D array."""
    truth = read_image(truth_path)
    return read_image(dapi), truth[..., 0] if truth.ndim == 3 else truth


def overlap_regions(truth: np.ndarray, width: float) -> np.ndarray:
    """Real overlap regions of a K.tif truth: connected 255 areas of >= 0.5 x width^2 (K.tif
    also marks isolated specks and outline pixels as 255)."""
    from scipy import ndimage as ndi

    overlap = truth == 255
    comp, _ = ndi.label(overlap)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return (sizes >= 0.5 * width**2)[comp] & overlap


def covers_overlap(labels: np.ndarray, truth: np.ndarray, width: float) -> np.ndarray:
    """Per label id: the object covers a real overlap region (>= 0.3 x width^2 of its pixels)."""
    counts = np.bincount(labels[overlap_regions(truth, width)], minlength=labels.max() + 1)
    return counts >= 0.3 * width**2


def truth_ious(truth: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label id: the best mask IoU with a truth chromosome (connected piece of one class,
    >= 10 px) and how many truth chromosomes it matches at IoU >= 0.5."""
    from scipy import ndimage as ndi

    n = int(labels.max()) + 1
    areas = np.bincount(labels.ravel(), minlength=n)
    best_iou = np.zeros(n)
    n_match = np.zeros(n, int)
    for cls in range(1, 25):
        pieces, _ = ndi.label(truth == cls)
        piece_sizes = np.bincount(pieces.ravel())
        both = (pieces > 0) & (labels > 0)
        pairs, inter = np.unique(np.stack([pieces[both], labels[both]]), axis=1, return_counts=True)
        for (piece, lab), i in zip(pairs.T, inter, strict=True):
            if piece_sizes[piece] >= 10:
                iou = i / (piece_sizes[piece] + areas[lab] - i)
                best_iou[lab] = max(best_iou[lab], iou)
                n_match[lab] += iou >= 0.5
    return best_iou, n_match


def dapi_image_stats(dapi: Path, truth_path: Path, params=None) -> dict:
    return dapi_stats(*read_dapi_pair(dapi, truth_path), dapi.name, params)


def dapi_stats(image: np.ndarray, truth: np.ndarray, name: str, params=None) -> dict:
    """Truth chromosomes found as single kept objects, and overlap objects flagged ``cluster``."""
    from scipy import ndimage as ndi

    seg = segment_spread(image, params)
    labels = seg.labels
    obj = seg.objects.set_index("label")
    status = obj["status"].to_dict()
    # truth pieces: connected components per class (1..24), overlap (255) excluded
    n_truth = 0
    found = 0
    for cls in range(1, 25):
        comp, n = ndi.label(truth == cls)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        for k in range(1, n + 1):
            if sizes[k] < 10:
                continue
            n_truth += 1
            piece = comp == k
            ids, counts = np.unique(labels[piece], return_counts=True)
            best = 0.0
            for lab, inter in zip(ids, counts, strict=True):
                if lab == 0 or status.get(lab) != "chromosome":
                    continue
                union = sizes[k] + obj.at[lab, "area"] - inter
                best = max(best, inter / union)
            found += best >= 0.5
    kept_ids = np.array(seg.kept_labels(), int)
    on_truth = np.bincount(labels[truth > 0], minlength=labels.max() + 1)
    areas = np.bincount(labels.ravel(), minlength=labels.max() + 1)
    kept_off_truth = int(np.sum(on_truth[kept_ids] < 0.5 * areas[kept_ids])) if kept_ids.size else 0
    overlap = truth == 255
    ov_labels, ov_counts = np.unique(labels[overlap], return_counts=True)
    ov_objects = [lab for lab, c in zip(ov_labels, ov_counts, strict=True) if lab > 0 and c >= 3]
    ov_cluster = sum(status[lab] == "cluster" for lab in ov_objects)
    ov_not_kept = sum(status[lab] != "chromosome" for lab in ov_objects)
    # substantial overlaps: objects covering a real overlap region (not specks or outlines)
    covers = covers_overlap(labels, truth, float(seg.stats.get("width", 4.0)))
    sub_objects = [lab for lab in np.flatnonzero(covers) if lab > 0]
    sub_cluster = sum(status[lab] == "cluster" for lab in sub_objects)
    sub_kept = sum(status[lab] == "chromosome" for lab in sub_objects)
    return {
        "image": name,
        "truth": n_truth,
        "found": int(found),
        "recall": found / max(n_truth, 1),
        "kept": len(seg.kept_labels()),
        "kept_off_truth": kept_off_truth,
        "nuclei": int((seg.objects["status"] == "nucleus").sum()),
        "overlap_objects": len(ov_objects),
        "overlap_cluster": int(ov_cluster),
        "overlap_not_kept": int(ov_not_kept),
        "ov_region_objects": len(sub_objects),
        "ov_region_cluster": int(sub_cluster),
        "ov_region_kept": int(sub_kept),
    }


def dapi_table(root: Path, limit: int | None = None, params=None) -> pd.DataFrame:
    rows = [dapi_image_stats(d, k, params) for d, k in dapi_pairs(root)[:limit]]
    table = pd.DataFrame(rows)
    total = {
        "image": "ALL",
        "truth": table["truth"].sum(),
        "found": table["found"].sum(),
        "recall": table["found"].sum() / max(table["truth"].sum(), 1),
        "kept": table["kept"].sum(),
        "kept_off_truth": table["kept_off_truth"].sum(),
        "nuclei": table["nuclei"].sum(),
        "overlap_objects": table["overlap_objects"].sum(),
        "overlap_cluster": table["overlap_cluster"].sum(),
        "overlap_not_kept": table["overlap_not_kept"].sum(),
        "ov_region_objects": table["ov_region_objects"].sum(),
        "ov_region_cluster": table["ov_region_cluster"].sum(),
        "ov_region_kept": table["ov_region_kept"].sum(),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dapi-limit", type=int, default=None, help="only the first N DAPI images")
    parser.add_argument("--skip-dapi", action="store_true")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 200)
    giemsa = args.data / "giemsa_spreads_ddx11"
    if giemsa.exists():
        print("## Giemsa DDX11-/- spreads (YOLO boxes, bbox IoU >= 0.5)")
        print(giemsa_table(giemsa).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    dapi = args.data / "adir_dapi_spreads"
    if dapi.exists() and not args.skip_dapi:
        print("\n## DAPI spreads with K.tif truth (mask IoU >= 0.5)")
        table = dapi_table(dapi, args.dapi_limit)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        last = table.iloc[-1]
        print(
            f"\noverall: {last['found']}/{last['truth']} truth chromosomes found as single kept "
            f"objects ({last['recall']:.1%}); objects covering overlap pixels: "
            f"{last['overlap_cluster']}/{last['overlap_objects']} flagged cluster, "
            f"{last['overlap_not_kept']}/{last['overlap_objects']} not kept; kept objects "
            f"mostly off truth chromosome pixels: {last['kept_off_truth']}/{last['kept']}; "
            f"objects covering a real overlap region: {last['ov_region_cluster']}/"
            f"{last['ov_region_objects']} cluster, {last['ov_region_kept']} kept as chromosome"
        )
        for group in "APV":
            rows = table.iloc[:-1]
            sub = rows[rows["image"].str.startswith(group)]
            print(
                f"  {group}: recall {sub['found'].sum() / max(sub['truth'].sum(), 1):.3f}, "
                f"overlap->cluster {sub['overlap_cluster'].sum()}/{sub['overlap_objects'].sum()}, "
                f"overlap region->cluster {sub['ov_region_cluster'].sum()}/"
                f"{sub['ov_region_objects'].sum()}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
