"""Agreement metrics, stratified k-fold cross-validation with repeats, learning curves.

``evaluate`` returns plain JSON-able dicts (the ``chromosort evaluate --json`` output):
``n, accuracy`` (concordance with the labels), ``kappa`` (Cohen), ``classes``,
``confusion`` (``counts`` rows = true, columns = predicted, and ``row_percent``),
``per_class`` (precision/recall/F1/support), ``distribution`` (true and predicted fractions).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress, relay, run_to_end


def _as_indices(values, classes: Sequence[str]) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(int)
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        return np.asarray([lookup[str(v)] for v in values], int)
    except KeyError as error:
        raise ChromosortError(f"label {error.args[0]!r} is not one of {list(classes)}") from None


def evaluate(y_true, y_pred, classes: Sequence[str]) -> dict:
    """Concordance, Cohen's kappa, confusion matrix, per-class P/R/F1, distributions."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    classes = [str(c) for c in classes]
    t = _as_indices(y_true, classes)
    p = _as_indices(y_pred, classes)
    if t.shape != p.shape:
        raise ChromosortError(f"{len(t)} true labels but {len(p)} predictions")
    k = len(classes)
    labels = list(range(k))
    n = int(len(t))
    if n == 0:
        raise ChromosortError("nothing to evaluate: no labelled crops")
    counts = confusion_matrix(t, p, labels=labels)
    row_sums = counts.sum(1, keepdims=True)
    row_pct = np.divide(100.0 * counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    if len(np.unique(np.concatenate([t, p]))) > 1:
        kappa = float(cohen_kappa_score(t, p, labels=labels))
    else:
        kappa = 1.0 if np.array_equal(t, p) else 0.0
    return {
        "n": n,
        "accuracy": float((t == p).mean()),
        "kappa": kappa,
        "classes": classes,
        "confusion": {"counts": counts.tolist(), "row_percent": np.round(row_pct, 2).tolist()},
        "per_class": {
            c: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(sup[i]),
            }
            for i, c in enumerate(classes)
        },
        "distribution": {
            "true": {c: float((t == i).mean()) for i, c in enumerate(classes)},
            "pred": {c: float((p == i).mean()) for i, c in enumerate(classes)},
        },
    }


def stratified_splits(targets, folds: int = 5, repeats: int = 1, seed: int = 0):
    """List of (repeat, fold, train_idx, test_idx) from repeated stratified k-fold."""
    from sklearn.model_selection import StratifiedKFold

    targets = np.asarray(targets)
    smallest = np.bincount(targets).min() if len(targets) else 0
    if folds < 2:
        raise ChromosortError("cross-validation needs at least 2 folds")
    if smallest < folds:
        raise ChromosortError(
            f"the smallest class has {smallest} crops: too few for {folds}-fold cross-validation"
        )
    out = []
    for r in range(repeats):
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + r)
        for f, (tr, te) in enumerate(skf.split(np.zeros(len(targets)), targets)):
            out.append((r, f, tr, te))
    return out


def summarize_folds(fold_reports: list[dict], pooled: dict) -> dict:
    """``pooled`` (evaluate over all out-of-fold predictions) + spread over the folds."""
    acc = np.array([f["accuracy"] for f in fold_reports])
    kap = np.array([f["kappa"] for f in fold_reports])
    out = dict(pooled)
    out.update(
        folds=fold_reports,
        accuracy_mean=float(acc.mean()),
        accuracy_sd=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        kappa_mean=float(kap.mean()),
        kappa_sd=float(kap.std(ddof=1)) if len(kap) > 1 else 0.0,
    )
    return out


def crossvalidate(
    fit_predict: Callable[[np.ndarray, np.ndarray], Generator[Progress, None, Any]],
    targets,
    classes: Sequence[str],
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
) -> Generator[Progress, None, dict]:
    """Stratified k-fold CV with repeats.

    ``fit_predict(train_idx, test_idx)`` is a progress generator that returns the predicted
    class indices for ``test_idx``. Returns ``evaluate`` of the pooled
    out-of-fold predictions (per repeat, averaged into one report over all) with ``folds``
    (one report per fold), ``accuracy_mean/sd``, ``kappa_mean/sd`` and ``repeats``.
    """
    targets = np.asarray(targets)
    splits = stratified_splits(targets, folds, repeats, seed)
    fold_reports, pooled_true, pooled_pred = [], [], []
    for step, (r, f, tr, te) in enumerate(splits):

        def change(report: Progress, step: int = step, r: int = r, f: int = f) -> Progress:
            """The fold's report, counted in folds and labelled with its repeat and fold."""
            message = f"repeat {r + 1} fold {f + 1}: {report.message}"
            return Progress(step, len(splits), message, report.metrics)

        pred = yield from relay(fit_predict(tr, te), change)
        if pred is None:
            raise ChromosortError("fit_predict gave no predictions")
        rep = evaluate(targets[te], np.asarray(pred), classes)
        rep.update(repeat=r, fold=f)
        rep.pop("per_class")
        fold_reports.append(rep)
        pooled_true.append(targets[te])
        pooled_pred.append(np.asarray(pred))
        yield Progress(
            step + 1, len(splits), f"fold {step + 1}/{len(splits)}", {"accuracy": rep["accuracy"]}
        )
    pooled = evaluate(np.concatenate(pooled_true), np.concatenate(pooled_pred), classes)
    pooled["n"] = int(len(targets))  # each crop predicted once per repeat
    result = summarize_folds(fold_reports, pooled)
    result.update(repeats=repeats, n_folds=folds)
    yield Progress(len(splits), len(splits), "cross-validation done")
    return result


def learning_curve(
    fit_predict: Callable[[np.ndarray, np.ndarray], Generator[Progress, None, Any]],
    targets,
    classes: Sequence[str],
    per_class: Sequence[int] = (5, 10, 20, 40, 80),
    folds: int = 5,
    seed: int = 0,
) -> Generator[Progress, None, list[dict]]:
    """Concordance vs. training crops per class (capped at what a class has).

    For each fold, the training part is subsampled to at most ``m`` crops per class; the test
    part stays whole. Returns a list of ``{"per_class", "n_train", "accuracy", "sd", "kappa",
    "kappas"}`` (``kappas``: Cohen's kappa of each fold, ``kappa`` their mean).
    """
    from sklearn.metrics import cohen_kappa_score

    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    splits = stratified_splits(targets, folds, 1, seed)
    total = len(per_class) * len(splits)
    curve, step = [], 0
    for m in per_class:
        accs, sizes, kappas = [], [], []
        for _, _, tr, te in splits:
            chosen = []
            for c in np.unique(targets[tr]):
                members = tr[targets[tr] == c]
                chosen.append(rng.permutation(members)[: min(m, len(members))])
            sub = np.sort(np.concatenate(chosen))
            pred = run_to_end(fit_predict(sub, te))
            accs.append(float((np.asarray(pred) == targets[te]).mean()))
            kappas.append(float(cohen_kappa_score(targets[te], np.asarray(pred))))
            sizes.append(len(sub))
            step += 1
            yield Progress(step, total, f"{m} per class", {"accuracy": accs[-1]})
        curve.append(
            {
                "per_class": int(m),
                "n_train": int(np.mean(sizes)),
                "accuracy": float(np.mean(accs)),
                "sd": float(np.std(accs, ddof=1)),
                "kappa": float(np.mean(kappas)),
                "kappas": [round(k, 4) for k in kappas],
            }
        )
    yield Progress(total, total, "learning curve done")
    return curve
