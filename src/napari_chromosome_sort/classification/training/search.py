"""The head's design chosen by an inner cross-validation on the training crops only.

A design is (preprocessing, feature set, PCA components, L2). Every candidate is fitted on each
inner training fold and scored by its out-of-fold predictions (accuracy and log loss after the
prior correction); a linear head is fitted on each crop's mean features over views while the
design is searched, by L-BFGS, warm-started from strong to weak L2. The scores are kept in the
feature cache (:mod:`.memo`), so training again on the same crops does not search again."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Generator

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.backbones import feature_columns
from napari_chromosome_sort.classification.models.heads import (
    fit_head,
    fit_linear,
    fit_prior_shift,
    head_logits,
    pca_basis,
    tta_proba,
)
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress


@contextlib.contextmanager
def one_thread():
    """Torch and numpy's BLAS on one thread: the head fits are small, and more threads only wait
    for each other (several times slower on a busy machine), and one thread makes a fit's bits
    independent of the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _blas_threads().limit(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _blas_threads():
    """The process's BLAS libraries (threadpoolctl; looked up once: a look-up takes ms)."""
    return ThreadpoolController()


def inner_fold_count(y: np.ndarray, folds: int) -> int:
    """The inner folds the smallest class allows, at most ``folds`` (0: too few for a CV)."""
    folds = int(min(folds, np.bincount(y).min()))
    return folds if folds >= 2 else 0


def inner_splits(y: np.ndarray, folds: int, seed: int, repeats: int = 1):
    """Stratified inner splits, ``repeats`` partitions one after another (all folds of one
    partition together)."""
    folds = inner_fold_count(y, folds)
    if not folds:
        return []
    from sklearn.model_selection import RepeatedStratifiedKFold  # heavy: a second to import

    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=max(1, repeats), random_state=seed)
    return list(cv.split(np.zeros(len(y)), y))


def log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean log loss of the view-averaged probabilities of ``logits`` (crops, views, k)."""
    p = tta_proba(logits)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())


def oof_score(oof: np.ndarray, y: np.ndarray, k: int, prior_correction: bool):
    """(accuracy, -log loss) of inner out-of-fold logits, after the prior shift if used."""
    shift = fit_prior_shift(oof, y, k) if prior_correction else np.zeros(k, np.float32)
    acc = float((tta_proba(oof + shift).argmax(1) == y).mean())
    return acc, -log_loss(oof + shift, y)


class DesignSearch:
    """The candidate designs of a head on ``arrays`` ({preprocessing: (n, views, D)}) and their
    inner-CV fits. ``linear``: a standardised linear head (else an MLP, which chooses only the
    preprocessing and L2, on all features)."""

    def __init__(self, arrays: dict, y: np.ndarray, k: int, config: TrainingConfig):
        self.arrays, self.y, self.k, self.config = arrays, y, k, config
        self.width = next(iter(arrays.values())).shape[-1]
        self.linear = config.hidden == 0 and config.dropout == 0
        self.l2s = sorted([config.l2] if config.l2 is not None else config.l2_grid, reverse=True)
        fsets = [config.feature_set] if config.feature_set else list(config.feature_set_grid)
        self.pcas = [config.pca] if config.pca is not None else list(config.pca_grid)
        if not self.linear:
            fsets, self.pcas = ["all"], [0]
        if self.width == feature_columns(config.backbone, "all").size:
            self.columns = {name: feature_columns(config.backbone, name) for name in fsets}
        else:  # features from elsewhere (not this backbone's pooled taps): use them all
            fsets = ["all"]
            self.columns = {"all": np.arange(self.width)}
        self.designs = [
            (key, name, r) for key in arrays for name in fsets for r in dict.fromkeys(self.pcas)
        ]
        self.candidates = [design + (l2,) for design in self.designs for l2 in self.l2s]
        search = len(self.candidates) > 1 or config.prior_correction
        self.per_repeat = inner_fold_count(y, config.inner_folds) if search else 0
        self.n_repeats = max(1, config.inner_repeats) if self.per_repeat else 1
        self.n_splits = self.per_repeat * self.n_repeats  # the splits themselves: see run()
        self.total = len(self.candidates) * self.n_splits + 1  # progress steps
        self.y_oof = np.tile(y, self.n_repeats)
        self.splits: list = []
        self._projections: dict = {}

    def reduced(self, key, name: str, r: int):
        """Standardised features of one design projected on its top ``r`` principal axes:
        (mu, sd, basis, Z); r = 0: all features, no projection (basis None). The projection
        on the most axes of ``pcas`` is computed once per (preprocessing, feature set); fewer
        axes are its first columns."""
        if r == 0:
            X = self.arrays[key][..., self.columns[name]]
            mu, sd, _ = pca_basis(X, 0)
            return mu, sd, None, (X - mu) / sd
        if (key, name) not in self._projections:
            X = self.arrays[key][..., self.columns[name]]
            n, v, d = X.shape
            with one_thread():
                mu, sd, basis = pca_basis(X, max(self.pcas))
                Z = ((X.reshape(n * v, d) - mu) / sd) @ basis
            self._projections[(key, name)] = mu, sd, basis, Z.reshape(n, v, -1)
        mu, sd, basis, Z = self._projections[(key, name)]
        return mu, sd, basis[:, :r], Z[..., :r]

    def inner_fit(self, key, name, r, l2, f, init=None, views=False):
        """The head of one candidate fitted on inner fold ``f``'s training crops and its logits
        (crops, views, k) on the held-out ones. A linear head is fitted on each crop's mean
        features over views while the design is searched (8 times fewer rows, the same choice
        on the WT crops), on every view with ``views``."""
        tr, te = self.splits[f]
        y, k, config = self.y, self.k, self.config
        with one_thread():
            if not self.linear:
                head = fit_head(self.arrays[key][tr], y[tr], k, config, l2)
                return head, head_logits(head, self.arrays[key][te])
            Z = self.reduced(key, name, r)[3]
            params = fit_linear(
                Z[tr] if views else Z[tr].mean(1, keepdims=True), y[tr], k, config, l2, init
            )
            return params, Z[te] @ params[0].T + params[1]

    def run(self, memo=None) -> Generator[Progress, None, tuple[dict, dict]]:
        """Every candidate's inner-CV score and out-of-fold logits, by candidate (from
        ``memo``, an :class:`.memo.InnerCVMemo`, when it holds them)."""
        config, total = self.config, self.total
        if self.n_splits:
            self.splits = inner_splits(
                self.y, config.inner_folds, config.seed, config.inner_repeats
            )
        scores, oofs = memo.load() if memo is not None else ({}, {})
        step = 0
        if scores:
            step = total - 1
            yield Progress(step, total, "choosing the model design: stored result for these crops")
        for key, name, r in self.designs if not scores else ():
            warm: dict[int, object] = {}
            for l2 in self.l2s:  # strong to weak L2, warm-started
                # one out-of-fold prediction of every crop per inner repeat, stacked
                oof = np.zeros(
                    (self.n_repeats, len(self.y), self.arrays[key].shape[1], self.k), np.float32
                )
                for f, (_, te) in enumerate(self.splits):
                    warm[f], oof[f // self.per_repeat, te] = self.inner_fit(
                        key, name, r, l2, f, warm.get(f)
                    )
                    step += 1
                    yield Progress(step, total, f"choosing the model design: fit {step} of {total}")
                if self.splits:
                    oof = oof.reshape(-1, *oof.shape[2:])
                    candidate = (key, name, r, l2)
                    scores[candidate] = oof_score(oof, self.y_oof, self.k, config.prior_correction)
                    oofs[candidate] = oof
        if memo is not None and len(scores) == len(self.candidates):
            memo.save(scores, oofs)
        return scores, oofs

    def choose(self, scores: dict, oofs: dict):
        """(members, preprocessing, out-of-fold logits) of the head to build (see
        :func:`choose_members`). A linear head's out-of-fold logits are those of the chosen
        members fitted on every view, as the final head is fitted: the prior shift and the
        calibration are those of such a head."""
        members, key, oof = choose_members(
            self.designs, self.l2s, scores, oofs, self.y_oof, self.k, self.config, self.linear
        )
        if self.linear and oof is not None:
            full = np.zeros((self.n_repeats, len(self.y), *oof.shape[1:]), np.float32)
            for _, name, r, l2 in members:
                for f, (_, te) in enumerate(self.splits):
                    full[f // self.per_repeat, te] += self.inner_fit(
                        key, name, r, l2, f, views=True
                    )[1]
            oof = full.reshape(oof.shape) / len(members)
        return members, key, oof


def choose_members(designs, l2s, scores, oofs, y, k, config, linear):
    """(members, preprocessing, out-of-fold logits) of the head to build.

    ``combine="best"``: the single best (preprocessing, feature set, PCA, L2) by inner CV.
    ``combine="ensemble"`` (linear heads): every (feature set, PCA) design with its best L2,
    logits averaged; only the preprocessing is then chosen, by the ensemble's inner-CV score.
    """
    if config.combine not in ("best", "ensemble"):
        raise ChromosortError(f"unknown combine {config.combine!r}; use 'best' or 'ensemble'")
    if config.select_by not in ("log_loss", "accuracy"):
        raise ChromosortError(
            f"unknown select_by {config.select_by!r}; use 'log_loss' or 'accuracy'"
        )
    keys = list(dict.fromkeys(d[0] for d in designs))
    if not scores:  # no inner CV possible: the first design with the first L2
        return [designs[0] + (l2s[0],)], designs[0][0], None

    def rank(score):  # score = (accuracy, -log loss)
        """Sort key of an inner-CV score: ``select_by`` first, the other as tie-break."""
        return score if config.select_by == "accuracy" else (score[1], score[0])

    def best_l2(design):
        """``design`` with the L2 of its best inner-CV score appended."""
        return max((design + (l2,) for l2 in l2s), key=lambda c: rank(scores[c]))

    if config.combine == "ensemble" and linear:
        options = []
        for key in keys:
            members = [best_l2(d) for d in designs if d[0] == key]
            oof = np.mean([oofs[m] for m in members], axis=0)
            options.append((oof_score(oof, y, k, config.prior_correction), members, key, oof))
        _, members, key, oof = max(options, key=lambda o: rank(o[0]))
        return members, key, oof
    best = max((best_l2(d) for d in designs), key=lambda c: rank(scores[c]))
    return [best], best[0], oofs[best]
