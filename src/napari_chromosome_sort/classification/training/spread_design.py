"""A linear head's design chosen leave-one-spread-out on a lab's own crops.

When the user's own crops record the spread they were cut from (the ``source`` column of the
dataset's manifest), the design (feature set, PCA components, L2, and beside a reference set
whether its crops are moved onto the look of the own crops) is chosen by an inner
leave-one-spread-out: each own spread in turn is held out whole, the head is fitted on the
reference crops and the other own spreads (the move and the PCA axes estimated on those alone),
and the held-out spread is scored as a spread is judged: its share of crops called right and the
largest error of its A/B/C shares. A spread's crops are never split between the inner training
and validation sides. The design whose worst held-out spread is called best is kept (:func:`rank`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.backbones import feature_columns
from napari_chromosome_sort.classification.models.heads import (
    fit_linear,
    pca_basis,
    reference_shift,
    tta_proba,
)
from napari_chromosome_sort.classification.training.search import one_thread
from napari_chromosome_sort.files.dataset import CropDataset
from napari_chromosome_sort.progress import Progress

#: fewest own spreads for a leave-one-spread-out choice (2 would judge each design on one)
MIN_SPREADS = 3


def spread_groups(root, paths: Sequence) -> np.ndarray | None:
    """The spread of origin of each crop of ``paths`` (an int per crop, -1 when unknown) from
    the manifest of dataset ``root``, or None when it names fewer than ``MIN_SPREADS``."""
    root = Path(root)
    if not (root / "manifest.csv").is_file():
        return None
    table = CropDataset(root).manifest()
    source = {
        (root / f).resolve(): str(s) for f, s in zip(table["file"], table["source"], strict=True)
    }
    names = [source.get(Path(p).resolve(), "") for p in paths]
    index = {name: i for i, name in enumerate(sorted({n for n in names if n}))}
    if len(index) < MIN_SPREADS:
        return None
    return np.asarray([index.get(n, -1) for n in names], int)


def spread_splits(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) per own spread (group >= 0): the held-out rows are that
    spread's crops, the training rows every other crop (crops of no spread, -1, always train)."""
    groups = np.asarray(groups, int)
    return [
        (np.flatnonzero(groups != g), np.flatnonzero(groups == g))
        for g in np.unique(groups[groups >= 0])
    ]


def spread_score(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    """(share of crops called right, largest A/B/C share error) of one held-out spread."""
    shares = [abs(np.mean(y == j) - np.mean(pred == j)) for j in range(k)]
    return float(np.mean(pred == y)), float(max(shares))


def _moved(X, y, reference, rows, k):
    """``X`` with the reference crops moved by the move estimated on ``rows`` alone."""
    move = reference_shift(X[rows], y[rows], reference[rows], k)
    if not move.any():
        return X
    X = X.copy()
    X[reference] += move
    return X


def rank(row: dict) -> tuple[float, float]:
    """Sort key of a candidate's inner scores: the worst held-out spread's share called right,
    the mean over the held-out spreads breaking ties (docs/validation.md: against the mean of
    (called right - share error), 0.768 against 0.761 pooled, worst spread 0.70 against 0.68)."""
    return row["worst_right"], row["mean_right"]


def _fold_scores(X, y, k, tr, te, config, pcas, l2s):
    """((PCA components, L2), held-out spread score) of every candidate on one inner split: PCA
    axes and standardisation from the training rows, L2 from strong to weak, warm-started."""
    with one_thread():
        mu, sd, basis = pca_basis(X[tr], max(pcas))
    Z = (X - mu) / sd
    if basis is not None:
        Z = Z @ basis
    for r in dict.fromkeys(pcas):
        Zr = Z if (r == 0 or basis is None) else Z[..., :r]
        warm = None
        for l2 in l2s:
            with one_thread():
                warm = fit_linear(Zr[tr].mean(1, keepdims=True), y[tr], k, config, l2, warm)
            pred = tta_proba(Zr[te] @ warm[0].T + warm[1]).argmax(1)
            yield (int(r), float(l2)), spread_score(y[te], pred, k)


def choose_by_spread(
    arrays: dict,
    y: np.ndarray,
    k: int,
    groups: np.ndarray,
    reference: np.ndarray | None,
    config: TrainingConfig,
    columns: dict,
) -> Generator[Progress, None, tuple[dict, list[dict]]]:
    """The design with the best inner leave-one-spread-out score, and every candidate's scores.

    ``arrays``: {preprocessing: features (n, views, D)} as they are (not moved); ``groups``:
    spread per crop (-1: none, e.g. the reference crops); ``columns``: {feature set: column
    indices}. Returns ``({"preprocessing", "feature_set", "pca", "l2", "align"}, rows)``."""
    y = np.asarray(y, int)
    splits = spread_splits(groups)
    two_sources = reference is not None and np.any(reference) and not np.all(reference)
    aligns = (True, False) if two_sources else (False,)
    l2s = sorted([config.l2] if config.l2 is not None else config.l2_grid, reverse=True)
    pcas = [config.pca] if config.pca is not None else list(config.pca_grid)
    per: dict = {}
    total = len(arrays) * len(splits) * len(aligns) * len(columns) * len(l2s) * len(set(pcas))
    step = 0
    for (key, X), (tr, te), align in itertools.product(arrays.items(), splits, aligns):
        moved = _moved(X, y, np.asarray(reference, bool), tr, k) if align else X
        for name, cols in columns.items():
            for (r, l2), scored in _fold_scores(moved[..., cols], y, k, tr, te, config, pcas, l2s):
                per.setdefault((key, name, r, l2, align), []).append(scored)
                step += 1
                yield Progress(step, total, f"choosing the design spread by spread: {step}")
    rows = []
    for (key, name, r, l2, align), scores in per.items():
        right, error = np.asarray(scores).T
        rows.append(
            {
                "preprocessing": key,
                "feature_set": name,
                "pca": r,
                "l2": l2,
                "align": align,
                "mean_right": round(float(right.mean()), 4),
                "worst_right": round(float(right.min()), 4),
                "mean_share_error": round(float(error.mean()), 4),
            }
        )
    best = max(rows, key=rank)
    design = {key: best[key] for key in ("preprocessing", "feature_set", "pca", "l2", "align")}
    return design, rows


def enough_spreads(groups) -> bool:
    """Whether ``groups`` (each crop's spread, -1 for none; None: unknown) name at least
    :data:`MIN_SPREADS` spreads, enough to hold one out at a time."""
    if groups is None:
        return False
    groups = np.asarray(groups)
    return len(np.unique(groups[groups >= 0])) >= MIN_SPREADS


def spread_choice_applies(config: TrainingConfig, groups) -> bool:
    """Whether the design is chosen leave-one-spread-out: asked for, a linear head, crops of at
    least ``spread_design.MIN_SPREADS`` spreads."""
    if not config.design_by_spread or config.hidden or config.dropout:
        return False
    return enough_spreads(groups)


def design_by_spread(
    arrays: dict,
    y: np.ndarray,
    k: int,
    groups: np.ndarray,
    reference: np.ndarray | None,
    config: TrainingConfig,
) -> Generator[Progress, None, tuple]:
    """(config with the design fixed, reference or None, arrays of the chosen preprocessing,
    info) of the leave-one-spread-out choice (:func:`.spread_design.choose_by_spread`)."""
    arrays = {key: X[:, : config.views] for key, X in arrays.items()}
    width = next(iter(arrays.values())).shape[-1]
    fsets = [config.feature_set] if config.feature_set else list(config.feature_set_grid)
    if width == feature_columns(config.backbone, "all").size:
        columns = {name: feature_columns(config.backbone, name) for name in fsets}
    else:
        columns = {"all": np.arange(width)}
    design, rows = yield from choose_by_spread(arrays, y, k, groups, reference, config, columns)
    key = design["preprocessing"]
    config = dataclasses.replace(
        config, feature_set=design["feature_set"], pca=design["pca"], l2=design["l2"]
    )
    info = {
        "feature_set": design["feature_set"],
        "pca": design["pca"],
        "l2": design["l2"],
        "reference_moved": bool(design["align"]),
        "spreads": int(len(np.unique(np.asarray(groups)[np.asarray(groups) >= 0]))),
        "candidates": [{**r, "preprocessing": _prep_label(r["preprocessing"])} for r in rows],
    }
    return config, reference if design["align"] else None, {key: arrays[key]}, info


def _prep_label(key):
    """A preprocessing as JSON-ready data (None stays None)."""
    return key.to_dict() if hasattr(key, "to_dict") else key
