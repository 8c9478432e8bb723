"""Whole-spread validation: segment -> crop -> classify the labelled Giemsa spreads.

1. WT-only: train on the published WT crops (folder per class), predict every kept object of
   each spread, match objects to the YOLO boxes (bbox IoU >= 0.5, one-to-one, greedy by IoU) and
   report the agreement of predicted and box class (+ the naive "plain appearance" baseline).
2. Leave-one-spread-out (``--loso``): add the matched, labelled chromosomes of the other spreads
   to the WT crops, train, and test on the held-out spread.

The WT-only model is trained once (class-balanced head + training-prior correction, the
``TrainingConfig`` defaults); its probabilities on every kept object are post-processed in several
ways (variants, all label-free):

* ``balanced``: the logit shift removed (class-balanced head, no prior imposed);
* ``wt_prior``: as trained (the WT class frequencies imposed on every spread);
* ``em_spread``: EM prior adaptation (Saerens et al. 2002, ``priors.adapt_priors``) on all kept
  objects of each spread, starting from the WT priors the corrected model is calibrated to
  (maximum likelihood: ``predict_spread(..., prior_pseudo_counts=0)``);
* ``map_em_spread``: the same with one Dirichlet pseudo-count (MAP-EM, ``pseudo_counts=1``;
  the default of ``predict_spread`` / ``chromosort predict --spreads`` since it was added);
* ``em_sample``: the same EM on the pooled objects of the 3 spreads (one DDX11 sample);
* ``em_balanced_uniform``: EM on the balanced probabilities taken as calibrated to uniform priors.

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


def spread_logits(model, spread, cache=None) -> np.ndarray:
    """Per-view logits (n_kept, 8, k) of every kept object of a spread (cached features)."""
    import torch

    from napari_chromosome_sort.features import extract_features
    from napari_chromosome_sort.progress import run_to_end

    crops = [c.pixels for c in spread["crops"]]
    k = len(model.classes)
    if not crops:
        return np.zeros((0, 8, k))
    X = run_to_end(
        extract_features(model.backbone, crops, model.preprocessing, views=8, cache_dir=cache)
    )
    n, v, d = X.shape
    with torch.no_grad():
        return model.head(torch.from_numpy(X.reshape(n * v, d))).reshape(n, v, -1).numpy()


def softmax_views(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    return p.mean(1)


def variants(model, logits: list) -> dict:
    """Label-free post-processings of the per-spread logits -> {name: [proba per spread]}."""
    from napari_chromosome_sort.predict import PRIOR_PSEUDO_COUNTS, calibration_priors
    from napari_chromosome_sort.priors import adapt_priors

    shift = model.head.logit_shift.numpy()
    wt_prior = calibration_priors(model)  # WT class frequencies (the head is prior-corrected)
    balanced = [softmax_views(L - shift) for L in logits]
    corrected = [softmax_views(L) for L in logits]
    pooled, _ = adapt_priors(np.concatenate(corrected), wt_prior)
    cuts = np.cumsum([len(p) for p in corrected])[:-1]
    return {
        "balanced": balanced,
        "wt_prior": corrected,
        "em_spread": [adapt_priors(p, wt_prior)[0] for p in corrected],
        "map_em_spread": [
            adapt_priors(p, wt_prior, pseudo_counts=PRIOR_PSEUDO_COUNTS)[0] for p in corrected
        ],
        "em_sample": np.split(pooled, cuts),
        "em_balanced_uniform": [adapt_priors(p)[0] for p in balanced],
    }


def score(proba, spread, classes, model_classes):
    """Agreement of predicted and box class on the matched objects (+ confusion, counts)."""
    pairs = spread["pairs"]
    if not pairs:
        return dict(n_boxes=len(spread["boxes"]), n_matched=0, agree=0)
    idx = [i for i, _ in pairs]
    pred = [model_classes[i] for i in np.asarray(proba)[idx].argmax(1)]
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
        true_counts={c: truth.count(c) for c in classes},
        pred_counts={c: pred.count(c) for c in classes},
        kept_pred_counts={
            c: int((np.asarray(proba).argmax(1) == model_classes.index(c)).sum()) for c in classes
        },
    )


def summarise(rows):
    n = sum(r["n_matched"] for r in rows)
    out = dict(n_matched=n, accuracy=sum(r["agree"] for r in rows) / max(n, 1))
    for key in ("true_counts", "pred_counts"):
        if all(key in r for r in rows):
            total = {c: sum(r[key][c] for r in rows) for c in rows[0][key]}
            out[key.replace("counts", "fractions")] = {
                c: round(v / max(n, 1), 3) for c, v in total.items()
            }
    return out


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
    for appearance, key in [("canonical", "wt_only")] + ([("plain", "plain")] * args.plain):
        model = train(images, targets, classes, args.weights, appearance, args.cache, True)
        if args.save_model and key == "wt_only":
            from napari_chromosome_sort.model_io import save_model

            save_model(model, args.save_model)
        logits = [spread_logits(model, s, args.cache) for s in spreads]
        for name, probas in variants(model, logits).items():
            if key == "plain" and name != "balanced":
                continue
            name = f"{key}_{name}"
            rows = {
                s["name"]: score(p, s, classes, list(model.classes))
                for s, p in zip(spreads, probas, strict=True)
            }
            results[name] = dict(per_spread=rows, overall=summarise(list(rows.values())))
            print(
                f"{name:28s}",
                " ".join(f"{r.get('accuracy', 0):.2f}" for r in rows.values()),
                json.dumps(results[name]["overall"]),
            )
    if args.loso:
        from napari_chromosome_sort.predict import PRIOR_PSEUDO_COUNTS, calibration_priors
        from napari_chromosome_sort.priors import adapt_priors

        rows, rows_em, rows_map = {}, {}, {}
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
            proba = softmax_views(spread_logits(model, held, args.cache))
            rows[held["name"]] = score(proba, held, classes, list(model.classes))
            adapted, _ = adapt_priors(proba, calibration_priors(model))
            rows_em[held["name"]] = score(adapted, held, classes, list(model.classes))
            adapted, _ = adapt_priors(
                proba, calibration_priors(model), pseudo_counts=PRIOR_PSEUDO_COUNTS
            )
            rows_map[held["name"]] = score(adapted, held, classes, list(model.classes))
            print(
                "loso",
                held["name"],
                round(rows[held["name"]].get("accuracy", 0), 3),
                "em_spread",
                round(rows_em[held["name"]].get("accuracy", 0), 3),
                "map_em_spread",
                round(rows_map[held["name"]].get("accuracy", 0), 3),
            )
        results["loso"] = dict(per_spread=rows, overall=summarise(list(rows.values())))
        results["loso_em_spread"] = dict(
            per_spread=rows_em, overall=summarise(list(rows_em.values()))
        )
        print("loso", json.dumps(results["loso"]["overall"]))
        results["loso_map_em_spread"] = dict(
            per_spread=rows_map, overall=summarise(list(rows_map.values()))
        )
        print("loso_em_spread", json.dumps(results["loso_em_spread"]["overall"]))
        print("loso_map_em_spread", json.dumps(results["loso_map_em_spread"]["overall"]))
    results["seconds"] = round(time.time() - t0, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
