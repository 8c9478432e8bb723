"""Warnings about a trained model that its numbers support: cross-validated agreement no better
than always calling the commonest class, classes with too few crops to learn from, and how many
more crops would help, read off a measured learning curve.

The learning curve is measured, never assumed: the crops' features (those the model's head was
trained on) are split into stratified cross-validation folds; a linear head (scikit-learn's
logistic regression) is trained on 2, 3, … crops per class of each training fold and scored
(Cohen's κ) on the held-out fold (:func:`..analysis.metrics.learning_curve`). κ is fitted
against the log of the crops per class; "about N more per class" is said only when that rise is
measured (one-sided p < ``ALPHA``) and the crops needed lie within ``MAX_EXTRAPOLATION`` times
the most measured. Checked on synthetic features (tests/test_training_checks.py): from a curve
measured up to 20 crops per class it promised κ 0.6 at 35 per class, and 35 gave κ 0.57.
Learning curves level off, so the trend overstates what far more crops give: beyond the limit
the warning gives only the lower bound the trend allows ("at least N more"), and when the curve
does not rise clearly, it says it cannot tell.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence

import numpy as np
from scipy.stats import binomtest, linregress
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from napari_chromosome_sort.analysis import metrics
from napari_chromosome_sort.progress import Progress

#: fewer crops than this in a class: too few to learn it, whatever the score says (a floor, not
#: a tuned value: below it a 5-fold split leaves at most 3 test crops of the class per fold)
MIN_CROPS_PER_CLASS = 20
#: Cohen's kappa below this is "slight" agreement at best (Landis and Koch, 1977)
MIN_KAPPA = 0.4
#: the agreement "how many more crops" aims at: "substantial" (Landis and Koch, 1977)
TARGET_KAPPA = 0.6
#: significance of "better than always calling the commonest class" (one-sided binomial test)
#: and of "agreement rises with more crops" (one-sided test of the learning curve's slope)
ALPHA = 0.05
#: the crops per class needed are said only up to this multiple of the most measured
MAX_EXTRAPOLATION = 2.0
#: the most training sizes (crops per class) a learning curve measures
CURVE_POINTS = 5


def training_warnings(metadata: Mapping) -> list[str]:
    """Plain sentences for the user about a model's metadata (``training.counts``, the
    cross-validated ``metrics`` or the inner-CV accuracy of the design search when no outer
    cross-validation was run, and ``training.learning_curve`` when one was measured); empty when
    nothing is wrong."""
    training = metadata.get("training") or {}
    metrics = metadata.get("metrics") or {}
    counts = {str(c): int(n) for c, n in (training.get("counts") or {}).items()}
    curve = training.get("learning_curve") or []
    warnings = []
    few = {c: n for c, n in counts.items() if n < MIN_CROPS_PER_CLASS}
    if few:
        listed = ", ".join(f"{c} ({n})" for c, n in few.items())
        more = sum(MIN_CROPS_PER_CLASS - n for n in few.values())
        warnings.append(
            f"Too few crops to learn from in class {listed}: label at least "
            f"{MIN_CROPS_PER_CLASS} per class ({more} more in all) before trusting its calls."
        )
    chance = _near_chance(counts, metrics)
    if chance:
        warnings.append(chance)
    if curve and (few or chance):
        warnings.append(more_crops_advice(curve, counts))
    return warnings


def _near_chance(counts: dict[str, int], metrics: Mapping) -> str | None:
    """The near-chance warning, or None."""
    total = sum(counts.values())
    accuracy = metrics.get("accuracy", metrics.get("inner_cv_accuracy"))
    n = int(metrics.get("n") or total)
    if accuracy is None or not total or not n:
        return None
    commonest = max(counts, key=counts.get)
    baseline = counts[commonest] / total
    p = binomtest(round(float(accuracy) * n), n, baseline, alternative="greater").pvalue
    kappa = metrics.get("kappa")
    what = "cross-validated" if "accuracy" in metrics else "inner cross-validation"
    if p <= ALPHA and (kappa is None or float(kappa) >= MIN_KAPPA):
        return None
    kappa_text = f", κ {float(kappa):.2f}" if kappa is not None else ""
    return (
        f"Near chance: {what} agreement {100 * float(accuracy):.0f}%{kappa_text} against "
        f"{100 * baseline:.0f}% for always calling {commonest} (p = {p:.2g}): do not use "
        "this model's calls; label more crops of every class."
    )


# ----------------------------------------------------------------------------- learning curve
def curve_sizes(smallest_training_fold: int, points: int = CURVE_POINTS) -> list[int]:
    """Crops per class a learning curve measures: from 2 up to the smallest class's share of a
    training fold, spaced evenly on a log scale."""
    if smallest_training_fold < 2:
        return []
    sizes = np.unique(np.round(np.geomspace(2, smallest_training_fold, points)).astype(int))
    return [int(s) for s in sizes]


def learning_curve(
    features: np.ndarray, y: Sequence[int], folds: int = 5, seed: int = 0
) -> Generator[Progress, None, list[dict]]:
    """Cross-validated Cohen's κ of a linear head trained on growing numbers of crops per class
    (:func:`..analysis.metrics.learning_curve`, one point per fold and size).

    ``features``: one row per crop (views averaged when 3-D); ``y``: class indices. Each
    training fold is cut to ``m`` crops of every class for each ``m`` of :func:`curve_sizes`;
    returns ``[{"per_class": m, "fold": f, "kappa": κ}, …]`` (empty when the smallest class has
    fewer than 3 crops: no curve can be measured)."""
    X = np.asarray(features, np.float32)
    X = X.mean(axis=1) if X.ndim == 3 else X
    y = np.asarray(y, int)
    counts = np.bincount(y)
    folds = int(min(folds, counts.min()))
    if folds < 2 or len(counts) < 2:
        return []
    sizes = curve_sizes(int(counts.min()) * (folds - 1) // folds)

    def fit_predict(train, test):
        head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        head.fit(X[train], y[train])
        return head.predict(X[test])
        yield  # a generator, as the curve expects; nothing to report within one fit

    classes = [str(c) for c in range(len(counts))]
    curve = yield from metrics.learning_curve(fit_predict, y, classes, sizes, folds, seed)
    return [
        {"per_class": point["per_class"], "fold": f, "kappa": kappa}
        for point in curve
        for f, kappa in enumerate(point["kappas"])
    ]


def _rising_fit(curve: list[dict]):
    """The least-squares fit κ = a + b·ln m over every fold's point when its slope is above 0
    at one-sided p < ALPHA, else None."""
    m = np.array([p["per_class"] for p in curve], float)
    kappa = np.array([p["kappa"] for p in curve], float)
    if len(np.unique(m)) < 2:
        return None
    fit = linregress(np.log(m), kappa)
    return fit if fit.slope > 0 and fit.pvalue / 2 < ALPHA else None


def crops_per_class_for(curve: list[dict], target: float = TARGET_KAPPA) -> float | None:
    """Crops per class at which the fitted curve (κ = a + b·ln m) reaches ``target``, or None
    when the rise is not measured (:func:`_rising_fit`) or the answer lies beyond
    ``MAX_EXTRAPOLATION`` times the most crops measured."""
    fit = _rising_fit(curve)
    if fit is None:
        return None
    needed = math.exp((target - fit.intercept) / fit.slope)
    top = max(p["per_class"] for p in curve)
    return needed if needed <= MAX_EXTRAPOLATION * top else None


def _summary(curve: list[dict]) -> str:
    """``κ 0.12 with 2 crops per class, 0.31 with 4`` (mean over folds)."""
    by_size: dict[int, list[float]] = {}
    for p in curve:
        by_size.setdefault(int(p["per_class"]), []).append(float(p["kappa"]))
    parts = [f"{np.mean(v):.2f} with {m}" for m, v in sorted(by_size.items())]
    return "κ " + ", ".join(parts) + " crops per class"


def more_crops_advice(curve: list[dict], counts: Mapping[str, int]) -> str:
    """How many more crops per class would bring agreement to TARGET_KAPPA, from the measured
    learning curve; a lower bound when that lies beyond what the curve can tell; or why it
    cannot tell at all."""
    measured = f"the cross-validated learning curve of a linear head ({_summary(curve)})"
    top = max(p["per_class"] for p in curve)
    needed = crops_per_class_for(curve)
    if needed is None and _rising_fit(curve) is None:
        return (
            f"How many more crops would help cannot be read from {measured}: it does not rise "
            "clearly. Check that the classes are labelled consistently, then label more crops "
            "of every class and train again to see."
        )
    if needed is None:
        floor = int(MAX_EXTRAPOLATION * top)
        least = max(floor - min(counts.values()), 0)
        return (
            f"Agreement still rises with more crops ({measured}), but too slowly to reach "
            f"κ {TARGET_KAPPA} within {floor} crops per class: label at least {least} more per "
            "class and train again to measure."
        )
    target = 5 * math.ceil(needed / 5)  # rounded up to 5: no false precision
    more = {c: target - n for c, n in counts.items() if target > n}
    if not more:
        return f"By {measured}, the crops you have should reach κ {TARGET_KAPPA}."
    each = ", ".join(f"{c} {n}" for c, n in more.items())
    return (
        f"About {max(more.values())} more crops per class ({each}) would bring agreement to "
        f"about κ {TARGET_KAPPA}, by the trend of {measured}."
    )


def add_learning_curve(model, paths: Sequence, y: Sequence[int], folds: int = 5):
    """Measure the learning curve of ``model``'s training crops (``paths``, class indices
    ``y``) on the features its head was trained on and record it in the model's
    ``metadata["training"]["learning_curve"]``, only when the model would get a warning.
    Generator of progress; returns the curve."""
    from napari_chromosome_sort.classification.features import extract_features  # torch

    if not training_warnings(model.metadata):
        return []
    features = yield from extract_features(
        model.backbone, list(paths), model.preprocessing, views=1
    )
    curve = yield from learning_curve(features, y, folds)
    model.metadata.setdefault("training", {})["learning_curve"] = curve
    return curve
