"""Whole-spread validation: segment -> crop -> classify the labelled Giemsa spreads.

1. WT-only: train on the published WT crops (folder per class), predict every kept object of
   each spread, match objects to the YOLO boxes (bbox IoU >= 0.5, one-to-one, greedy by IoU) and
   report the agreement of predicted and box class (+ the naive "plain appearance" baseline).
2. Leave-one-spread-out (``--loso``): add the matched, labelled chromosomes of the other spreads
   to the WT crops, train, and test on the held-out spread.

Models are trained class-balanced; ``wt_only`` predicts without the training-prior correction
(a WT-trained model must not impose the WT class frequencies on a mutant population: that would
bias exactly the distribution the assay measures), ``wt_only_wt_prior`` with it, for comparison.

Nothing here is fitted to the spreads' labels: the segmentation, the crop recipe and the
canonical appearance are fixed; the labels are only used to score (and, in LOSO, as training data
for the *other* spreads).

    python scripts/validate_spreads.py --out docs/validation_spreads.json [--loso] [--plain]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "src"))


def read_boxes(path: Path, shape) -> np.ndarray:
    """YOLO ``class cx cy w h`` -> array (n, 5): class, y0, x0, y1, x1 in pixels."""
    h, w = shape[:2]
    rows = np.loadtxt(path, ndmin=2)
    out = np.zeros((len(rows), 5))
    out[:, 0] = rows[:, 0]
    out[:, 1] = (rows[:, 2] - rows[:, 4] / 2) * h
    out[:, 2] = (rows[:, 1] - rows[:, 3] / 2) * w
    out[:, 3] = (rows[:, 2] + rows[:, 4] / 2) * h
    out[:, 4] = (rows[:, 1] + rows[:, 3] / 2) * w
    return out


def iou(a, b) -> float:
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, y1 - y0) * max(0.0, x1 - x0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(objects_bbox: np.ndarray, boxes: np.ndarray, threshold: float = 0.5):
    """One-to-one greedy matching by IoU; returns list of (object_index, box_index)."""
    pairs = []
    for i, ob in enumerate(objects_bbox):
        for j, bx in enumerate(boxes):
            v = iou(ob, bx[1:])
            if v >= threshold:
                pairs.append((v, i, j))
    pairs.sort(reverse=True)
    used_o, used_b, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_o and j not in used_b:
            used_o.add(i)
            used_b.add(j)
            out.append((i, j))
    return out


def load_wt(root: Path):
    from napari_chromosome_sort.dataset import scan_image_folder
    from napari_chromosome_sort.features import as_rgb_uint8

    paths, targets, classes = scan_image_folder(root)
    return [as_rgb_uint8(p) for p in paths], np.asarray(targets), [c.upper() for c in classes]


def train(
    images, targets, classes, weights, appearance="canonical", cache=None, prior_correction=True
):
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.training import TrainingConfig, train_classifier

    config = TrainingConfig(
        backbone="squeezenet1_1",
        weights=str(weights),
        appearance=appearance,
        cache_dir=cache,
        prior_correction=prior_correction,
    )
    return run_to_end(train_classifier(images, targets, classes, config))


def proba_cached(model, images, cache=None) -> np.ndarray:
    """``model.predict_proba(images, tta=True)`` through the (cached) 8-view pooled features:
    the same numbers (the head sees the same pooled features), computed once per crop."""
    import torch

    from napari_chromosome_sort.features import extract_features
    from napari_chromosome_sort.progress import run_to_end

    X = run_to_end(
        extract_features(model.backbone, images, model.preprocessing, views=8, cache_dir=cache)
    )
    n, v, d = X.shape
    with torch.no_grad():
        logits = model.head(torch.from_numpy(X.reshape(n * v, d))).reshape(n, v, -1)
        return torch.softmax(logits, dim=-1).mean(1).numpy()


def spread_objects(spreads: Path):
    """Per spread: image, segmentation, crops, bbox array, boxes, matches."""
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.io import read_image
    from napari_chromosome_sort.segmentation import segment_spread

    out = []
    for image_path in sorted((spreads / "images").glob("*.png")):
        image = read_image(image_path)
        seg = segment_spread(image)
        crops = crop_chromosomes(image, seg)
        objects = seg.objects.set_index("label")
        bbox = np.array(
            [objects.loc[c.label, ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]] for c in crops],
            dtype=float,
        ).reshape(-1, 4)
        boxes = read_boxes(spreads / "labels" / f"{image_path.stem}.txt", image.shape)
        out.append(
            dict(
                name=image_path.name,
                image=image,
                seg=seg,
                crops=crops,
                bbox=bbox,
                boxes=boxes,
                pairs=match(bbox, boxes),
            )
        )
    return out


def score(model, spread, classes, cache=None):
    pairs = spread["pairs"]
    if not pairs:
        return dict(n_boxes=len(spread["boxes"]), n_matched=0, agree=0)
    proba = proba_cached(model, [spread["crops"][i].pixels for i, _ in pairs], cache)
    pred = [model.classes[i] for i in proba.argmax(1)]
    truth = [classes[int(spread["boxes"][j, 0])] for _, j in pairs]
    agree = int(sum(p == t for p, t in zip(pred, truth, strict=True)))
    confusion = {t: {p: 0 for p in classes} for t in classes}
    for t, p in zip(truth, pred, strict=True):
        confusion[t][p] += 1
    return dict(
        n_boxes=len(spread["boxes"]),
        n_kept=len(spread["crops"]),
        n_matched=len(pairs),
        agree=agree,
        accuracy=agree / len(pairs),
        confusion=confusion,
    )


def summarise(rows):
    n = sum(r["n_matched"] for r in rows)
    return dict(n_matched=n, accuracy=sum(r["agree"] for r in rows) / max(n, 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wt", type=Path, default=SHARED / "data" / "ikemoto_crops_wt")
    parser.add_argument("--spreads", type=Path, default=SHARED / "data" / "giemsa_spreads_ddx11")
    parser.add_argument(
        "--weights", type=Path, default=SHARED / "weights" / "squeezenet1_1_imagenet_features.pth"
    )
    parser.add_argument("--cache", default=None, help="feature cache folder")
    parser.add_argument("--loso", action="store_true", help="also leave-one-spread-out")
    parser.add_argument("--plain", action="store_true", help="also the naive plain-appearance run")
    parser.add_argument("--save-model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    args = parser.parse_args(argv)

    t0 = time.time()
    images, targets, classes = load_wt(args.wt)
    spreads = spread_objects(args.spreads)
    results: dict = {"classes": classes}
    for s in spreads:
        print(
            f"{s['name']}: {len(s['crops'])} kept, {len(s['boxes'])} boxes, "
            f"{len(s['pairs'])} matched"
        )
    runs = [("canonical", False, "wt_only"), ("canonical", True, "wt_only_wt_prior")]
    runs += [("plain", False, "wt_only_plain")] if args.plain else []
    for appearance, prior, key in runs:
        model = train(images, targets, classes, args.weights, appearance, args.cache, prior)
        if args.save_model and key == "wt_only":
            from napari_chromosome_sort.model_io import save_model

            save_model(model, args.save_model)
        rows = {s["name"]: score(model, s, classes, args.cache) for s in spreads}
        results[key] = dict(per_spread=rows, overall=summarise(list(rows.values())))
        print(
            key,
            json.dumps(results[key]["overall"]),
            {k: round(v.get("accuracy", 0), 3) for k, v in rows.items()},
        )
    if args.loso:
        rows = {}
        for held in spreads:
            extra_images, extra_targets = [], []
            for s in spreads:
                if s is held:
                    continue
                for i, j in s["pairs"]:
                    extra_images.append(s["crops"][i].pixels)
                    extra_targets.append(int(s["boxes"][j, 0]))
            model = train(
                images + extra_images,
                np.concatenate([targets, extra_targets]),
                classes,
                args.weights,
                "canonical",
                args.cache,
            )
            rows[held["name"]] = score(model, held, classes)
            print("loso", held["name"], round(rows[held["name"]].get("accuracy", 0), 3))
        results["loso"] = dict(per_spread=rows, overall=summarise(list(rows.values())))
        print("loso", json.dumps(results["loso"]["overall"]))
    results["seconds"] = round(time.time() - t0, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
