"""A lab's own labels, leave-one-spread-out over the five annotated Giemsa DDX11 spreads.

Each spread in turn is the unseen one. A model is trained on the WT crops and/or the crops the
pipeline cuts from the OTHER four spreads, labelled from their boxes
(``label_import.labelled_crops``: IoU >= 0.5, one-to-one), and judged on the fifth end to end:
every kept object called (the chromatid-pair rule of ``predict_spread``: an object built from two
separate sister chromatids is C), matched to the boxes. Figures per held-out spread: annotated
chromosomes called right (of all boxes), concordance on the matched ones, and the largest error of
the A/B/C shares (calls of the kept objects against the box classes), in points.

Recipes (every one the head of ``chromosort train``, its design chosen by inner CV on its own
training crops): WT + own crops as they are; WT + own with the WT crops moved onto the look of the
own crops (``--reference``); the same with the design and the move chosen leave-one-spread-out
over the training spreads (``--reference --design-by-spread``); WT only; own only; and the
majority class of the training crops.
The learning curve adds 0, 10, 25, 50, 100 or all own crops of the other spreads to the WT crops,
chosen at random or least sure first (smallest margin of the WT-only model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import giemsa_spreads, squeezenet_weights, wt_crops_dir

CLASSES = ("a", "b", "c")
CURVE_SIZES = (0, 10, 25, 50, 100, None)  # None: all
#: short name -> (what the tables call it, its training set and settings)
RECIPES = {
    "aligned": (
        "WT + own, WT moved onto own look (train --reference)",
        {"wt": True, "own": True, "align": True, "prior": False},
    ),
    "by-spread": (
        "WT + own, design and WT move chosen leave-one-spread-out on the own crops",
        {"wt": True, "own": True, "align": True, "prior": False, "by_spread": True},
    ),
    "aligned-prior": (
        "WT + own, WT moved onto own look, prior correction on",
        {"wt": True, "own": True, "align": True, "prior": True},
    ),
    "defaults": (
        "WT + own as they are (train defaults)",
        {"wt": True, "own": True, "align": False, "prior": True},
    ),
    "wt": ("WT only", {"wt": True, "own": False, "align": False, "prior": True}),
    "own": ("own only", {"wt": False, "own": True, "align": False, "prior": True}),
}


@dataclass
class SpreadSet:
    """One spread's kept objects: features, box class (-1 unmatched), chromatid pairs."""

    name: str
    features: np.ndarray  # (n_kept, views, D)
    targets: np.ndarray  # (n_kept,)
    n_parts: np.ndarray  # (n_kept,)
    box_classes: np.ndarray  # (n_boxes,)
    box_of: dict[int, int]


@dataclass
class OwnLabelsData:
    wt_features: np.ndarray
    wt_targets: np.ndarray
    spreads: list[SpreadSet]


def load_data(cache_dir=None, views: int = 4) -> OwnLabelsData:
    """Features (the default preprocessing of ``chromosort train``) of the WT crops and of every
    kept object of the five spreads, with their box classes."""
    from napari_chromosome_sort.classification.config import TrainingConfig
    from napari_chromosome_sort.classification.features import extract_features, read_crop_rgb
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.files.dataset import scan_image_folder
    from napari_chromosome_sort.files.label_import import labelled_crops
    from napari_chromosome_sort.progress import run_to_end

    weights = squeezenet_weights()
    backbone = build_backbone("squeezenet1_1", str(weights) if weights.exists() else None)
    prep = TrainingConfig().preprocessings()[0]

    def features(images):
        return run_to_end(extract_features(backbone, images, prep, views, cache_dir=cache_dir))

    paths, targets, _ = scan_image_folder(wt_crops_dir())
    wt = features([read_crop_rgb(p) for p in paths])
    spreads = []
    for spread in giemsa_spreads():
        found = labelled_crops(spread.image, spread.boxes[:, 1:], spread.classes)
        X = features([c.pixels for c in found.crops])
        n_parts = found.objects["n_parts"].to_numpy()
        spreads.append(
            SpreadSet(spread.name, X, found.targets, n_parts, found.box_classes, found.box_of)
        )
    return OwnLabelsData(wt, np.asarray(targets, int), spreads)


def _config(fixed: bool, prior: bool):
    from napari_chromosome_sort.classification.config import TrainingConfig

    config = TrainingConfig(cache_dir=None, prior_correction=prior, design_by_spread=True)
    if fixed:  # the learning curve: the WT model's design
        config.feature_set, config.pca, config.l2 = "all", 256, 1.0
    return config


def fit(X, y, reference, fixed: bool = False, prior: bool = True, groups=None):
    """The head of ``chromosort train`` on features ``X``; ``reference``: crops moved onto the
    look of the others (None: none); ``prior``: the prior correction on; ``groups``: the spread
    of each crop (-1: WT), to choose the design leave-one-spread-out (None: inner CV)."""
    from napari_chromosome_sort.classification.training import train_head
    from napari_chromosome_sort.progress import run_to_end

    config = _config(fixed, prior)
    head, info = run_to_end(train_head(X, y, list(CLASSES), config, reference, groups))
    head.design = info.get("design_by_spread")
    return head


def calls(head, spread: SpreadSet, views: int = 4) -> np.ndarray:
    """The class index of every kept object of ``spread`` (chromatid pairs called C)."""
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba

    pred = tta_proba(head_logits(head, spread.features[:, :views])).argmax(1)
    pred[spread.n_parts >= 2] = CLASSES.index("c")
    return pred


def score(spread: SpreadSet, pred: np.ndarray) -> dict:
    """Called right of all boxes, concordance on the matched ones, largest share error."""
    truth = spread.box_classes
    right = sum(int(pred[obj] == truth[box]) for obj, box in spread.box_of.items())
    shares = [
        abs(float(np.mean(truth == j)) - (float(np.mean(pred == j)) if len(pred) else 0.0))
        for j in range(len(CLASSES))
    ]
    return {
        "spread": spread.name,
        "boxes": len(truth),
        "matched": len(spread.box_of),
        "right": right,
        "right_of_boxes": right / max(len(truth), 1),
        "concordance_matched": right / max(len(spread.box_of), 1),
        "share_error_points": 100 * max(shares),
    }


def training_set(data: OwnLabelsData, held: int, wt: bool, own_rows: dict | None):
    """(X, y, reference, groups) of WT crops (if ``wt``; group -1) + the other spreads' labelled
    crops (all of them, or ``own_rows[spread index]`` rows; group = spread index)."""
    Xs, ys, refs, groups = [], [], [], []
    if wt:
        Xs.append(data.wt_features)
        ys.append(data.wt_targets)
        refs.append(np.ones(len(data.wt_targets), bool))
        groups.append(np.full(len(data.wt_targets), -1))
    for j, s in enumerate(data.spreads):
        if j == held:
            continue
        rows = np.flatnonzero(s.targets >= 0) if own_rows is None else own_rows.get(j, [])
        Xs.append(s.features[rows])
        ys.append(s.targets[rows])
        refs.append(np.zeros(len(rows), bool))
        groups.append(np.full(len(rows), j))
    return np.concatenate(Xs), np.concatenate(ys), np.concatenate(refs), np.concatenate(groups)


def loso_table(data: OwnLabelsData, recipes=tuple(RECIPES)) -> pd.DataFrame:
    """One row per (recipe, held-out spread), the majority class of the training crops beside."""
    rows = []
    for name, recipe in (RECIPES[r] for r in recipes):
        for held, spread in enumerate(data.spreads):
            X, y, ref, groups = training_set(
                data, held, recipe["wt"], None if recipe["own"] else {}
            )
            head = fit(
                X,
                y,
                ref if recipe["align"] else None,
                prior=recipe["prior"],
                groups=groups if recipe.get("by_spread") else None,
            )
            rows.append({"recipe": name, **score(spread, calls(head, spread)), **_chosen(head)})
    for held, spread in enumerate(data.spreads):
        _, y, _, _ = training_set(data, held, True, None)
        majority = np.full(len(spread.targets), np.bincount(y).argmax())
        rows.append({"recipe": "majority class", **score(spread, majority)})
    return pd.DataFrame(rows)


def _chosen(head) -> dict:
    """The design a leave-one-spread-out choice kept (nothing without one)."""
    design = getattr(head, "design", None)
    if not design:
        return {}
    keys = ("feature_set", "pca", "l2", "reference_moved")
    return {"chosen": " ".join(f"{key}={design[key]}" for key in keys)}


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Per recipe: pooled right calls, the worst spread (named), spreads within 10 points."""
    out = []
    for name, t in table.groupby("recipe", sort=False):
        worst = t.loc[t["right_of_boxes"].idxmin()]
        out.append(
            {
                "recipe": name,
                "right_of_boxes": t["right"].sum() / t["boxes"].sum(),
                "concordance_matched": t["right"].sum() / t["matched"].sum(),
                "worst_spread": worst["spread"],
                "worst_right_of_boxes": worst["right_of_boxes"],
                "worst_share_error_points": t["share_error_points"].max(),
                "spreads_within_10_points": int((t["share_error_points"] <= 10).sum()),
            }
        )
    return pd.DataFrame(out)


def _least_sure_order(data: OwnLabelsData, held: int, head) -> dict:
    """The other spreads' labelled crops, least sure first under ``head``: (spread, row) pairs."""
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba

    items = []
    for j, s in enumerate(data.spreads):
        if j == held:
            continue
        rows = np.flatnonzero(s.targets >= 0)
        p = np.sort(tta_proba(head_logits(head, s.features[rows, :4])), axis=1)
        items += [(m, j, r) for m, r in zip(p[:, -1] - p[:, -2], rows, strict=True)]
    return [(j, r) for _, j, r in sorted(items, key=lambda t: t[0])]


def learning_curve(data: OwnLabelsData, seeds: int = 3, align: bool = True) -> pd.DataFrame:
    """Pooled right calls and worst spread against the number of own crops added to the WT crops,
    chosen at random (mean over ``seeds`` draws) or least sure first."""
    rows = []
    for held, spread in enumerate(data.spreads):
        X, y, _, _ = training_set(data, held, True, {})
        wt_head = fit(X, y, None, fixed=True)
        order = _least_sure_order(data, held, wt_head)
        for size in CURVE_SIZES:
            n = len(order) if size is None else min(size, len(order))
            draws = {"least sure first": [order[:n]]}
            rng = np.random.default_rng(held)
            draws["random"] = [
                [order[i] for i in rng.permutation(len(order))[:n]] for _ in range(seeds)
            ]
            for strategy, picks in draws.items():
                for pick in picks:
                    own_rows: dict = {}
                    for j, r in pick:
                        own_rows.setdefault(j, []).append(r)
                    X, y, ref, _ = training_set(data, held, True, own_rows)
                    head = fit(X, y, ref if align else None, fixed=True, prior=not align)
                    rows.append(
                        {
                            "own_crops": "all" if size is None else size,
                            "strategy": strategy,
                            **score(spread, calls(head, spread)),
                        }
                    )
    table = pd.DataFrame(rows)
    keys = ["own_crops", "strategy"]
    per_spread = table.groupby([*keys, "spread"], sort=False).mean(numeric_only=True)
    grouped = per_spread.groupby(level=keys, sort=False)
    return pd.DataFrame(
        {
            "right_of_boxes": grouped["right"].sum() / grouped["boxes"].sum(),
            "worst_right_of_boxes": grouped["right_of_boxes"].min(),
            "worst_share_error_points": grouped["share_error_points"].max(),
        }
    ).reset_index()


def own_labels_report(
    cache_dir=None, curve: bool = True, seeds: int = 3, recipes=tuple(RECIPES)
) -> dict:
    """The tables of docs/validation.md's own-labels section."""
    data = load_data(cache_dir)
    table = loso_table(data, recipes)
    tables = {"per_spread": table, "pooled": pooled(table)}
    if curve:
        tables["curve"] = learning_curve(data, seeds)
    return tables
