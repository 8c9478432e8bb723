"""Before/after figure of a learned segmentation on a real Giemsa spread.

A model is learned (``learn_segmentation``) from the YOLO boxes of one annotated spread and
applied to another; the figure shows, on a region of that other spread, the objects kept by the
shipped defaults (left) and by the learned model (right) with the annotated chromosome boxes:
solid where a kept object matches the box (IoU >= 0.5), dashed red where none does. The region
is the one where the two differ most. Writes docs/images/segment_learning_before_after.png and
prints the recall of both on the whole spread.

    PYTHONPATH=. .venv/bin/python scripts/make_segment_learning_figure.py --train 2.png --test 1.png

``--dapi``: learned from the K.tif truth of the spreads of the slides ``--train`` (comma list),
shown on the DAPI spread ``--test``; a truth chromosome counts as found by one kept object at
mask IoU >= 0.5 (drawn as its box).

The data root is validation's (``$CHROMOSORT_DATA``, else ``../shared/data``).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
from validation.boxes import match_boxes
from validation.data import giemsa_spreads

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images" / "segment_learning_before_after.png"


def found_pieces(seg, truth: np.ndarray) -> np.ndarray:
    """Whether each truth chromosome of a K.tif (``truth_pieces`` order) is one kept object
    (mask IoU >= 0.5)."""
    from validation.segmentation import truth_pieces

    labels = seg.labels
    areas = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    keep = np.zeros(areas.size, bool)
    keep[np.asarray(list(seg.kept_labels()), int)] = True
    hit = []
    for piece in truth_pieces(truth):
        ids, inter = np.unique(labels[piece], return_counts=True)
        ok = (ids > 0) & keep[ids]
        iou = inter[ok] / (piece.sum() + areas[ids[ok]] - inter[ok])
        hit.append(bool(iou.size and iou.max() >= 0.5))
    return np.asarray(hit, bool)


def dapi_case(train_slides: list[str], test_name: str):
    """(training spreads, test image, its truth boxes, found-flags function) of a DAPI case."""
    from validation.data import dapi_pairs, read_dapi_pair
    from validation.learned import _truth_boxes

    from napari_chromosome_sort.segmentation.learned import TrainingSpread

    train, test = [], None
    for dapi, truth_path in dapi_pairs():
        if dapi.parent.name in train_slides:
            image, truth = read_dapi_pair(dapi, truth_path)
            train.append(TrainingSpread(dapi.name, image, _truth_boxes(truth)))
        elif dapi.name == test_name:
            test = read_dapi_pair(dapi, truth_path)
    if test is None or not train:
        raise SystemExit(f"no DAPI spread {test_name} or no spreads of {train_slides}")
    image, truth = test
    return train, image, _truth_boxes(truth), lambda seg: found_pieces(seg, truth)


def found_boxes(seg, boxes: np.ndarray) -> np.ndarray:
    """Whether each truth box is matched by a kept object (IoU >= 0.5, one-to-one)."""
    kept = seg.objects[seg.objects["status"] == "chromosome"].reset_index(drop=True)
    hit = np.zeros(len(boxes), bool)
    for i, _ in match_boxes(boxes, kept):
        hit[i] = True
    return hit


def pick_window(
    boxes: np.ndarray, differ: np.ndarray, shape: tuple[int, int], size: int
) -> tuple[int, int]:
    """Top-left corner of a ``size`` square centred on a box whose status differs, holding the
    most such boxes whole (ties: the most boxes), inside the image."""
    centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
    best, corner = (-1, -1), (0, 0)
    for cy, cx in centres[differ] if differ.any() else centres:
        y0 = int(np.clip(cy - size / 2, 0, shape[0] - size))
        x0 = int(np.clip(cx - size / 2, 0, shape[1] - size))
        whole = (
            (boxes[:, 0] >= y0)
            & (boxes[:, 2] <= y0 + size)
            & (boxes[:, 1] >= x0)
            & (boxes[:, 3] <= x0 + size)
        )
        score = (int((whole & differ).sum()), int(whole.sum()))
        if score > best:
            best, corner = score, (y0, x0)
    return corner


def overlay(image: np.ndarray, seg, window: tuple[slice, slice]) -> np.ndarray:
    """The image region in grey with the outlines of the kept objects in green."""
    from skimage.segmentation import find_boundaries

    grey = image.astype(float).mean(axis=2) if image.ndim == 3 else image.astype(float)
    grey = grey[window]
    lo, hi = np.percentile(grey, [0.5, 99.5])
    grey = np.clip((grey - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    kept = seg.objects.loc[seg.objects["status"] == "chromosome", "label"].to_numpy()
    labels = np.where(np.isin(seg.labels[window], kept), seg.labels[window], 0)
    edge = find_boundaries(labels, mode="inner")
    rgb[edge] = (0.0, 0.75, 0.2)
    return rgb


CHANGE = "#f28e00"


def draw(ax, rgb, boxes, hit, corner, title: str, changes=None) -> None:
    """One panel: the overlay, the truth boxes (solid found, dashed red missed) and the model's
    changes against the rules (an orange diamond each)."""
    from matplotlib.patches import Rectangle

    ax.imshow(rgb, interpolation="nearest")
    y0, x0 = corner
    h, w = rgb.shape[:2]
    for _, cy, cx in [] if changes is None else changes.itertuples(index=False):
        if y0 <= cy < y0 + h and x0 <= cx < x0 + w:
            ax.plot(cx - x0, cy - y0, "D", ms=6, mfc=CHANGE, mec="black", mew=0.6)
    for (by0, bx0, by1, bx1), ok in zip(boxes, hit, strict=True):
        if by1 < y0 or bx1 < x0 or by0 > y0 + h or bx0 > x0 + w:
            continue
        ax.add_patch(
            Rectangle(
                (bx0 - x0 - 0.5, by0 - y0 - 0.5),
                bx1 - bx0,
                by1 - by0,
                fill=False,
                lw=1.2 if ok else 1.8,
                ls="-" if ok else "--",
                ec="#1f6fd1" if ok else "#e0201b",
            )
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from napari_chromosome_sort.segmentation import (
        learn_segmentation,
        segment_spread,
        segment_with_model,
    )
    from napari_chromosome_sort.segmentation.learned import TrainingSpread, compare_with_rules

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", default="2.png", help="spread whose boxes the model learns")
    parser.add_argument("--test", default="1.png", help="spread(s) the figure shows (comma list)")
    parser.add_argument("--size", type=int, default=420, help="side of the region shown, px")
    parser.add_argument("--dapi", action="store_true", help="a DAPI case (module docstring)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    tests = args.test.split(",")
    if args.dapi:
        cases = [dapi_case(args.train.split(","), name) for name in tests]
        train = cases[0][0]
        cases = [(name, *case[1:]) for name, case in zip(tests, cases, strict=True)]
        source = args.train.replace(",", "+")
    else:
        spreads = {s.name: s for s in giemsa_spreads()}
        chosen = spreads[args.train]
        train = [TrainingSpread(chosen.name, chosen.image, chosen.boxes[:, 1:])]
        cases = []
        for name in tests:
            boxes = spreads[name].boxes[:, 1:]
            cases.append((name, spreads[name].image, boxes, partial(found_boxes, boxes=boxes)))
        source = args.train

    model = learn_segmentation(train)
    settings = ", ".join(f"{k}={v:g}" for k, v in model.settings.items())
    print(f"model learned from {source}: {settings}; splits: {model.splits}; {model.examples}")
    fig, axes = plt.subplots(
        len(cases), 2, figsize=(10, 5.2 * len(cases) + 0.4), squeeze=False, layout="constrained"
    )
    for row, (name, image, boxes, found) in zip(axes, cases, strict=True):
        rules = segment_spread(image)
        learned = segment_with_model(image, model, rules=rules)
        hit_rules, hit_learned = found(rules), found(learned)
        changes = compare_with_rules(rules, learned)
        size = min(args.size, *image.shape[:2])
        corner = pick_window(boxes, hit_rules != hit_learned, image.shape[:2], size)
        window = (slice(corner[0], corner[0] + size), slice(corner[1], corner[1] + size))
        print(
            f"{name}: defaults {hit_rules.sum()}/{len(boxes)}, learned {hit_learned.sum()}/"
            f"{len(boxes)}; {changes.summary()}; region y {corner[0]}-{corner[0] + size}, "
            f"x {corner[1]}-{corner[1] + size}"
        )
        what = "truth chromosomes" if args.dapi else "boxes"
        draw(
            row[0],
            overlay(image, rules, window),
            boxes,
            hit_rules,
            corner,
            f"{name}, built-in rules: {hit_rules.sum()} of {len(boxes)} {what} found",
        )
        draw(
            row[1],
            overlay(image, learned, window),
            boxes,
            hit_learned,
            corner,
            f"learned from {source}: {hit_learned.sum()} of {len(boxes)} found",
            changes.objects,
        )
    legend = [
        Line2D([], [], color=(0.0, 0.75, 0.2), lw=2, label="kept object (outline)"),
        Line2D([], [], color="#1f6fd1", lw=1.2, label="annotated chromosome (box), found"),
        Line2D([], [], color="#e0201b", lw=1.8, ls="--", label="annotated chromosome, missed"),
        Line2D(
            [],
            [],
            lw=0,
            marker="D",
            mfc=CHANGE,
            mec="black",
            mew=0.6,
            ms=6,
            label="object changed by the model",
        ),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=4, frameon=False, fontsize=9)
    fig.get_layout_engine().set(rect=(0, 0.04 / len(cases), 1, 1 - 0.04 / len(cases)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
