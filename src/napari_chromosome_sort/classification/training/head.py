"""Training the head: frozen backbone + trained head on cached features (Ikemoto et al. 2022's
mode).

1. Every crop's pooled multi-layer features are computed ONCE for all 8 dihedral views
   (``features.extract_features``; memory + optional disk cache), for each candidate
   preprocessing (input size x geometry) (:mod:`.classifier`).
2. The head (standardisation + linear, or a small MLP) is trained on the cached features with
   a class-balanced loss. Its design -- preprocessing, feature set (pooled layers), PCA
   components and L2 strength -- is chosen by an inner stratified cross-validation (log loss) on
   the training crops only (nested: never on test folds; :mod:`.search`), and refitted on all
   of them with the L2 scaled by (inner training size / training size); the inner out-of-fold
   predictions also fit a prior correction (a logit shift) so that the predicted class
   frequencies match the training frequencies. A linear head is fitted by L-BFGS on the
   analytic gradient (convex, deterministic); an MLP head by Adam with a validation split and
   early stopping (the fitting is in :mod:`.models.heads`).
3. Optionally the last ``finetune_blocks`` backbone blocks are fine-tuned end to end
   (:mod:`.finetune`).

Every step is a generator of ``Progress`` that returns its result; stop by no longer iterating.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import torch

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.classifier import PooledHead
from napari_chromosome_sort.classification.models.heads import (
    fit_head,
    fit_linear,
    fit_oof_calibration,
    fit_prior_shift,
    reference_shift,
    tta_proba,
)
from napari_chromosome_sort.classification.training.memo import InnerCVMemo
from napari_chromosome_sort.classification.training.search import DesignSearch, one_thread
from napari_chromosome_sort.classification.training.spread_design import (
    design_by_spread,
    spread_choice_applies,
)
from napari_chromosome_sort.progress import Progress


def train_head(
    features,
    y: np.ndarray,
    classes: Sequence[str],
    config: TrainingConfig,
    reference: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Generator[Progress, None, tuple]:
    """Nested selection of the head's design on the training crops, then the final head.

    ``features``: cached features (n, views, D), or a dict {preprocessing: features} of
    candidate preprocessings. A linear head's design = (preprocessing, feature set, PCA
    components, L2), chosen by the inner stratified CV's log loss after the prior correction
    (``select_by``), or an average of designs (``combine="ensemble"``); an MLP head chooses
    preprocessing and L2 on all features.
    ``reference``: (n,) True for crops of a reference set (published crops of another lab),
    whose features are first moved onto the look of the user's own crops
    (:func:`.heads.reference_shift`); the head then reads the user's crops as they are.
    ``groups``: (n,) the spread each crop was cut from (-1: none, e.g. reference crops); with
    crops of at least 3 spreads, a linear head's design (and whether the reference crops are
    moved) is chosen leave-one-spread-out instead (:mod:`.spread_design`), if
    ``config.design_by_spread``.
    Returns ``(head, info)``; info holds the chosen design and the inner-CV scores.
    """
    k = len(classes)
    y = np.asarray(y, int)
    arrays = dict(features) if isinstance(features, dict) else {None: features}
    by_spread = None
    if spread_choice_applies(config, groups):
        config, reference, arrays, by_spread = yield from design_by_spread(
            arrays, y, k, groups, reference, config
        )
    search = DesignSearch(_head_inputs(arrays, y, k, reference, config.views), y, k, config)
    memo = InnerCVMemo(config, search.arrays, y, search.candidates) if search.n_splits else None
    if memo is not None and search.linear:
        stored = memo.load_head(search.width, k, search.arrays)
        if stored is not None:  # the same crops, labels and settings: the same head
            done = search.total
            yield Progress(done, done, "model design chosen (stored result for these crops)")
            return stored
    scores, oofs = yield from search.run(memo)
    members, key, oof = search.choose(scores, oofs)
    head, info = _final_head(search, members, key, oof)
    info["inner_cv"] = [_score_row(c, s) for c, s in scores.items()]
    if by_spread is not None:
        info["design_by_spread"] = by_spread
    yield Progress(
        search.total,
        search.total,
        f"model design chosen ({len(members)} combined)",
        {"inner_acc": info["inner_cv_accuracy_corrected"] or 0.0},
    )
    if memo is not None and search.linear:
        memo.save_head(head, info)
    return head, info


def _head_inputs(arrays: dict, y: np.ndarray, k: int, reference, views: int) -> dict:
    """The candidate feature arrays the head is trained on: reference crops moved onto the look
    of the user's crops (when both are there), the first ``views`` views, and one of each set
    of identical arrays (e.g. pad == stretch when every crop is square)."""
    if reference is not None and np.any(reference) and not np.all(reference):
        arrays = {key: _moved_reference(X, y, reference, k) for key, X in arrays.items()}
    unique: dict = {}
    for key, X in arrays.items():
        X = X[:, :views]
        if not any(X.shape == U.shape and np.array_equal(X, U) for U in unique.values()):
            unique[key] = X
    return unique


def _moved_reference(X: np.ndarray, y: np.ndarray, reference, k: int) -> np.ndarray:
    """``X`` with the reference crops' features moved by :func:`.heads.reference_shift`."""
    move = reference_shift(X, y, reference, k)
    if not move.any():
        return X
    X = X.copy()
    X[np.asarray(reference, bool)] += move
    return X


def _final_head(search: DesignSearch, members: list, key, oof) -> tuple:
    """The chosen members refitted on all training crops, with the prior correction and the
    calibration fitted on the inner out-of-fold logits ``oof``; returns ``(head, info)``."""
    config, y, k = search.config, search.y, search.k
    # the linear head's penalty is on the MEAN loss, so a fixed prior per crop means
    # l2 x n = constant (AdamW's decoupled weight decay of an MLP head is left as validated)
    l2_factor = (
        float(np.mean([len(tr) for tr, _ in search.splits])) / len(y)
        if (config.rescale_l2 and search.splits and search.linear)
        else 1.0
    )
    shift = np.zeros(k, np.float32)
    if config.prior_correction and oof is not None:
        shift = fit_prior_shift(oof, search.y_oof, k)
    if search.linear:
        head = _linear_head(search, members, key, l2_factor)
    else:
        with one_thread():
            head = fit_head(search.arrays[key], y, k, config, members[0][3])
    head.logit_shift.copy_(torch.from_numpy(shift))
    inner_acc = None
    calibration = None
    if oof is not None:
        inner_acc = float((tta_proba(oof + shift).argmax(1) == search.y_oof).mean())
        calibration = fit_oof_calibration(tta_proba(oof + shift), search.y_oof, k)
    info = {
        "preprocessing": key,
        "members": [{"feature_set": m[1], "pca": int(m[2]), "l2": float(m[3])} for m in members],
        "inner_cv": [],
        "l2_refit_factor": l2_factor,
        "logit_shift": shift.tolist(),
        "inner_cv_accuracy_corrected": inner_acc,
        "calibration": calibration,
    }
    return head, info


def _linear_head(search: DesignSearch, members: list, key, l2_factor: float) -> PooledHead:
    """Every member refitted on all crops: each is a linear map of the (standardised)
    features, so their mean logits are one Linear over all features (zero weight on columns
    that no member uses)."""
    k, width, columns = search.k, search.width, search.columns
    weight = np.zeros((k, width), np.float64)
    bias = np.zeros(k, np.float64)
    mu_full = np.zeros(width, np.float32)
    sd_full = np.ones(width, np.float32)
    for _, name, r, l2 in members:
        mu, sd, basis, Z = search.reduced(key, name, r)
        with one_thread():
            w_r, b = fit_linear(Z, search.y, k, search.config, l2 * l2_factor)
        weight[:, columns[name]] += (w_r if basis is None else w_r @ basis.T) / len(members)
        bias += b / len(members)
        mu_full[columns[name]], sd_full[columns[name]] = mu, sd
    head = PooledHead(width, k)
    head.mu.copy_(torch.from_numpy(mu_full))
    head.sigma.copy_(torch.from_numpy(sd_full))
    with torch.no_grad():
        head.net.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        head.net.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    head.eval()
    return head


def _score_row(candidate: tuple, score: tuple) -> dict:
    """One inner-CV candidate and its score, as the model's metadata records it."""
    prep, feature_set, pca, l2 = candidate
    return {
        "preprocessing": prep.to_dict() if hasattr(prep, "to_dict") else prep,
        "feature_set": feature_set,
        "pca": int(pca),
        "l2": float(l2),
        "accuracy": round(score[0], 4),
        "log_loss": round(-score[1], 4),
    }


# Names that moved out of this module with the split of training into steps, for callers not
# moved yet (the widgets); new code imports them from their modules or from the package.
_MOVED = {
    "scan_folder": "folders",
    "empty_classes": "folders",
    "check_folder": "folders",
    "candidate_features": "classifier",
    "train_classifier": "classifier",
    "train_from_folder": "classifier",
    "crossvalidate_features": "crossval",
    "crossvalidate_folder": "crossval",
}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        module = importlib.import_module(f"{__package__}.{_MOVED[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
