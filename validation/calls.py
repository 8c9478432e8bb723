"""Whole spreads end to end: segment -> crop -> classify the annotated Giemsa spreads with a model
trained on the wild-type crops only (the defaults of ``chromosort train``), and the choice of
prior handling by leave-one-spread-out.

An annotated chromosome is *called right* when a kept object matches its box (IoU >= 0.5,
one-to-one) and gets the box's class. Type shares: the calls over a spread's kept objects
against the box classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .boxes import match_boxes
from .data import AnnotatedSpread, giemsa_spreads, wt_crops_dir

#: Label-free prior handlings: the training priors as they are; re-estimated by MAP-EM on each
#: spread's kept objects (the Dirichlet prior: one pseudo-count spread evenly, or ``s`` crops'
#: worth centred on the training priors, which shrinks a small spread's estimate towards them);
#: or on all spreads of the sample pooled.
PRIOR_HANDLINGS = (
    "none",
    "per_spread",
    "per_spread_shrunk_10",
    "per_spread_shrunk_30",
    "per_spread_shrunk_100",
    "per_sample",
)
#: how far a handling may fall below no adaptation on any held-out spread (right calls / boxes)
MAX_LOSS_VS_NONE = 0.01


@dataclass
class SpreadCalls:
    """One spread's kept objects with their per-view logits and the box each matches."""

    spread: AnnotatedSpread
    logits: np.ndarray  # (n_kept, views, k)
    n_parts: np.ndarray  # (n_kept,)
    box_of: dict[int, int]  # kept row -> box row


def train_wt_model(weights=None, cache_dir=None):
    """The classifier of ``chromosort train WT_CROPS`` (TrainingConfig defaults)."""
    from napari_chromosome_sort.classification.features import read_crop_rgb
    from napari_chromosome_sort.classification.training import TrainingConfig, train_classifier
    from napari_chromosome_sort.files.dataset import scan_image_folder
    from napari_chromosome_sort.progress import run_to_end

    paths, targets, classes = scan_image_folder(wt_crops_dir())
    images = [read_crop_rgb(p) for p in paths]
    config = TrainingConfig(weights=None if weights is None else str(weights), cache_dir=cache_dir)
    classes = [c.upper() for c in classes]
    return run_to_end(train_classifier(images, np.asarray(targets), classes, config))


def spread_calls(model, spread: AnnotatedSpread, cache_dir=None) -> SpreadCalls:
    """Segment, crop and compute per-view logits of every kept object of one spread."""
    import torch

    from napari_chromosome_sort.classification.features import extract_features
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.segmentation import segment_spread

    seg = segment_spread(spread.image)
    crops = crop_chromosomes(spread.image, seg)
    objects = seg.objects.set_index("label")
    kept = objects.loc[[c.label for c in crops]].reset_index()
    box_of = {obj: box for box, obj in match_boxes(spread.boxes, kept)}
    k = len(model.classes)
    if not crops:
        return SpreadCalls(spread, np.zeros((0, 8, k)), np.zeros(0, int), box_of)
    X = run_to_end(
        extract_features(
            model.backbone,
            [c.pixels for c in crops],
            model.preprocessing,
            views=8,
            cache_dir=cache_dir,
        )
    )
    n, v, d = X.shape
    with torch.no_grad():
        logits = model.head(torch.from_numpy(X.reshape(n * v, d))).reshape(n, v, -1).numpy()
    return SpreadCalls(spread, logits, kept["n_parts"].to_numpy(), box_of)


def _softmax_mean(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(-1, keepdims=True)).mean(1)


def calls_under(model, all_calls: list[SpreadCalls], handling: str) -> list[np.ndarray]:
    """Per spread, the class index of every kept object under one prior handling (the
    chromatid-pair rule of ``predict_spread`` applied)."""
    from napari_chromosome_sort.classification.predict import calibration_priors, estimate_priors
    from napari_chromosome_sort.classification.priors import adapt_priors

    views = getattr(model, "prediction_views", 8)  # the views the product averages
    probas = [_softmax_mean(c.logits[:, :views]) for c in all_calls]
    if handling == "per_spread":
        probas = [estimate_priors(model, p)[0] if len(p) else p for p in probas]
    elif handling.startswith("per_spread_shrunk_"):
        base = calibration_priors(model)
        strength = float(handling.rsplit("_", 1)[1])
        probas = [
            adapt_priors(p, base, pseudo_counts=strength * base)[0] if len(p) else p for p in probas
        ]
    elif handling == "per_sample":
        pooled, _ = estimate_priors(model, np.concatenate(probas))
        probas = np.split(pooled, np.cumsum([len(p) for p in probas])[:-1])
    elif handling != "none":
        raise ValueError(f"unknown prior handling {handling!r}")
    c_index = [str(c).lower() for c in model.classes].index("c")
    out = []
    for calls, p in zip(all_calls, probas, strict=True):
        pred = p.argmax(1) if len(p) else np.zeros(0, int)
        pred[calls.n_parts >= 2] = c_index
        out.append(pred)
    return out


def score_spread(calls: SpreadCalls, pred: np.ndarray, classes) -> dict:
    """Right calls over all boxes and the type shares (calls of the kept objects vs boxes)."""
    truth = calls.spread.classes
    right = sum(int(pred[obj] == truth[box]) for obj, box in calls.box_of.items())
    row = {
        "spread": calls.spread.name,
        "boxes": len(truth),
        "matched": len(calls.box_of),
        "right": right,
        "right_of_boxes": right / max(len(truth), 1),
        "right_of_matched": right / max(len(calls.box_of), 1),
    }
    worst = 0.0
    for j, name in enumerate(classes):
        true_share = float(np.mean(truth == j))
        pred_share = float(np.mean(pred == j)) if len(pred) else 0.0
        row[f"true_{name}"] = true_share
        row[f"called_{name}"] = pred_share
        worst = max(worst, abs(true_share - pred_share))
    row["max_share_error"] = worst
    return row


def handling_table(model, all_calls: list[SpreadCalls]) -> pd.DataFrame:
    """One row per (prior handling, spread)."""
    classes = list(model.classes)
    rows = []
    for handling in PRIOR_HANDLINGS:
        for calls, pred in zip(all_calls, calls_under(model, all_calls, handling), strict=True):
            rows.append({"handling": handling, **score_spread(calls, pred, classes)})
    return pd.DataFrame(rows)


def _safe_best(table: pd.DataFrame) -> str:
    """The handling with the most right calls among those never more than
    ``MAX_LOSS_VS_NONE`` below no adaptation on any spread of ``table`` (ties: none)."""
    wide = table.pivot(index="handling", columns="spread", values="right_of_boxes")
    safe = (wide.sub(wide.loc["none"], axis=1) >= -MAX_LOSS_VS_NONE - 1e-9).all(axis=1)
    right = table.groupby("handling")["right"].sum()
    candidates = [h for h in PRIOR_HANDLINGS if safe.get(h, False)]
    return max(candidates, key=lambda h: (right[h], h == "none"))


def choose_handling_loso(table: pd.DataFrame) -> pd.DataFrame:
    """For each spread, the handling chosen on the *other* spreads (:func:`_safe_best`), judged
    on the held-out spread beside no adaptation."""
    rows = []
    for spread in table["spread"].unique():
        chosen = _safe_best(table[table["spread"] != spread])
        held = table[table["spread"] == spread].set_index("handling")
        rows.append(
            {
                "held_out": spread,
                "chosen": chosen,
                "right_of_boxes": held.at[chosen, "right_of_boxes"],
                "none_right_of_boxes": held.at["none", "right_of_boxes"],
                "max_share_error": held.at[chosen, "max_share_error"],
                "none_max_share_error": held.at["none", "max_share_error"],
            }
        )
    return pd.DataFrame(rows)


def wt_model(model_path=None, weights=None, cache_dir=None):
    """The WT-crop model: loaded from ``model_path`` when it exists, else trained (and saved
    there when a path is given)."""
    from pathlib import Path

    from napari_chromosome_sort.classification.models.model_io import load_model, save_model

    if model_path is not None and Path(model_path).exists():
        return load_model(model_path)
    model = train_wt_model(weights, cache_dir)
    if model_path is not None:
        save_model(model, model_path)
    return model


def calls_report(model_path=None, weights=None, cache_dir=None) -> dict[str, pd.DataFrame]:
    """The whole-spread tables: per handling and spread, pooled, and the LOSO choice."""
    model = wt_model(model_path, weights, cache_dir)
    all_calls = [spread_calls(model, s, cache_dir) for s in giemsa_spreads()]
    table = handling_table(model, all_calls)
    grouped = table.groupby("handling", sort=False)
    pooled = grouped[["boxes", "matched", "right"]].sum().reset_index()
    pooled["right_of_boxes"] = pooled["right"] / pooled["boxes"]
    pooled["worst_spread_right"] = grouped["right_of_boxes"].min().to_numpy()
    pooled["worst_share_error"] = grouped["max_share_error"].max().to_numpy()
    return {"per_spread": table, "pooled": pooled, "loso": choose_handling_loso(table)}
