"""Training: frozen backbone + trained head on cached features (the seed paper's mode).

1. Every crop's pooled multi-layer features are computed ONCE for all 8 dihedral views
   (``features.extract_features``; memory + optional disk cache), for each candidate
   preprocessing (input size x geometry).
2. The head (standardisation + linear, or a small MLP) is trained on the cached features with
   a class-balanced loss. Its design -- preprocessing, feature set (pooled layers), PCA
   components and L2 strength -- is chosen by an inner stratified cross-validation (log loss) on the
   training crops only (nested: never on test folds), and refitted on all of them with the L2
   scaled by (inner training size / training size); the inner out-of-fold predictions also
   fit a prior correction (a logit shift) so that the predicted class frequencies match the
   training frequencies. A linear head is fitted by L-BFGS on the analytic gradient (convex,
   deterministic; while the design is searched, on each crop's mean features over views); an
   MLP head by Adam with a validation split and early stopping (the fitting is in :mod:`.heads`).
3. Optionally the last ``finetune_blocks`` backbone blocks are fine-tuned end to end
   (random dihedral views, validation split, early stopping).

Every step is a generator of ``Progress`` that returns its result; stop by no longer iterating.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ChromosortError
from ..progress import Progress, relay
from .config import TrainingConfig
from .heads import (
    class_weights,
    fit_head,
    fit_linear,
    fit_oof_calibration,
    fit_prior_shift,
    head_logits,
    pca_basis,
    reference_shift,
    tta_proba,
    validation_mask,
)
from .spread_design import design_by_spread, spread_choice_applies

if TYPE_CHECKING:
    from .classifier import ChromosomeClassifier


# --------------------------------------------------------------------------- data


def scan_folder(root) -> tuple[list[Path], np.ndarray, list[str]]:
    """Folder-per-class image set -> (paths, targets, classes) (see dataset.scan_image_folder).

    A class folder without images is no class (a class nobody labelled yet)."""
    from ..dataset import scan_image_folder

    paths, targets, classes = scan_image_folder(root, skip_empty=True)
    return [Path(p) for p in paths], np.asarray(targets, int), list(classes)


def empty_classes(root, classes: Sequence[str]) -> list[str]:
    """Class folders of ``root`` that ``scan_folder`` left out because they hold no images."""
    folders = (p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(set(folders) - set(classes))


def check_folder(root, cv_folds: int = 0) -> tuple[int, list[str]]:
    """The quick check before any network runs: ``(folds, notes)``.

    ``folds``: the cross-validation folds the smallest class allows (at most ``cv_folds``; 0 =
    no evaluation); ``notes``: plain sentences for the user about what was changed or left out.
    Raises ChromosortError when the folder cannot be trained on at all.
    """
    _, targets, classes = scan_folder(root)
    notes = []
    left_out = empty_classes(root, classes)
    if left_out:
        notes.append(f"No crops yet in class {', '.join(left_out)}: trained without it.")
    counts = np.bincount(targets, minlength=len(classes))
    smallest, name = int(counts.min()), classes[int(counts.argmin())]
    folds = int(cv_folds) if cv_folds >= 2 else 0
    if folds > smallest:
        folds = smallest if smallest >= 2 else 0
        how = (
            f"evaluated by {folds}-fold cross-validation instead of {cv_folds}-fold"
            if folds
            else "the model is saved without the cross-validated concordance"
        )
        notes.append(
            f"Class {name} has only {smallest} crop{'s' * (smallest != 1)}: {how}. "
            "Label more chromosomes of it for a reliable estimate."
        )
    return folds, notes


def _inner_splits(y: np.ndarray, folds: int, seed: int, repeats: int = 1):
    """Stratified inner splits, ``repeats`` partitions one after another (all folds of one
    partition together)."""
    folds = _inner_fold_count(y, folds)
    if not folds:
        return []
    from sklearn.model_selection import RepeatedStratifiedKFold  # (a second to import)

    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=max(1, repeats), random_state=seed)
    return list(cv.split(np.zeros(len(y)), y))


def _inner_fold_count(y: np.ndarray, folds: int) -> int:
    """The inner folds the smallest class allows, at most ``folds`` (0: too few for a CV)."""
    folds = int(min(folds, np.bincount(y).min()))
    return folds if folds >= 2 else 0


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    p = tta_proba(logits)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())


def _oof_score(oof: np.ndarray, y: np.ndarray, k: int, prior_correction: bool):
    """(accuracy, -log loss) of inner out-of-fold logits, after the prior shift if used."""
    shift = fit_prior_shift(oof, y, k) if prior_correction else np.zeros(k, np.float32)
    acc = float((tta_proba(oof + shift).argmax(1) == y).mean())
    return acc, -_log_loss(oof + shift, y)


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
    from .backbones import feature_columns
    from .classifier import PooledHead

    k = len(classes)
    y = np.asarray(y, int)
    arrays = dict(features) if isinstance(features, dict) else {None: features}
    by_spread = None
    if spread_choice_applies(config, groups):
        config, reference, arrays, by_spread = yield from design_by_spread(
            arrays, y, k, groups, reference, config
        )
    if reference is not None and np.any(reference) and not np.all(reference):
        arrays = {key: _moved_reference(X, y, reference, k) for key, X in arrays.items()}
    unique: dict = {}
    for key, X in arrays.items():  # e.g. pad == stretch when every crop is square
        X = X[:, : config.views]
        if not any(X.shape == U.shape and np.array_equal(X, U) for U in unique.values()):
            unique[key] = X
    arrays = unique
    width = next(iter(arrays.values())).shape[-1]
    linear = config.hidden == 0 and config.dropout == 0
    l2s = sorted([config.l2] if config.l2 is not None else config.l2_grid, reverse=True)
    fsets = [config.feature_set] if config.feature_set else list(config.feature_set_grid)
    pcas = [config.pca] if config.pca is not None else list(config.pca_grid)
    if not linear:
        fsets, pcas = ["all"], [0]
    if width == feature_columns(config.backbone, "all").size:
        columns = {name: feature_columns(config.backbone, name) for name in fsets}
    else:  # features from elsewhere (not this backbone's pooled taps): use them all
        fsets = ["all"]
        columns = {"all": np.arange(width)}
    designs = [(key, name, r) for key in arrays for name in fsets for r in dict.fromkeys(pcas)]
    n_candidates = len(designs) * len(l2s)
    search = n_candidates > 1 or config.prior_correction
    per_repeat = _inner_fold_count(y, config.inner_folds) if search else 0
    n_repeats = max(1, config.inner_repeats) if per_repeat else 1
    n_splits = per_repeat * n_repeats  # the splits themselves only when fitting: see below
    y_oof = np.tile(y, n_repeats)
    projections: dict = {}

    def reduced(key, name, r):
        """Standardised features of one design projected on its top ``r`` principal axes:
        (mu, sd, basis, Z); r = 0: all features, no projection (basis None). The projection
        on the most axes of ``pcas`` is computed once per (preprocessing, feature set); fewer
        axes are its first columns."""
        if r == 0:
            X = arrays[key][..., columns[name]]
            mu, sd, _ = pca_basis(X, 0)
            return mu, sd, None, (X - mu) / sd
        if (key, name) not in projections:
            X = arrays[key][..., columns[name]]
            n, v, d = X.shape
            with _one_thread():
                mu, sd, basis = pca_basis(X, max(pcas))
                Z = ((X.reshape(n * v, d) - mu) / sd) @ basis
            projections[(key, name)] = mu, sd, basis, Z.reshape(n, v, -1)
        mu, sd, basis, Z = projections[(key, name)]
        return mu, sd, basis[:, :r], Z[..., :r]

    def inner_fit(key, name, r, l2, f, init=None, views=False):
        """The head of one candidate fitted on inner fold ``f``'s training crops and its logits
        (crops, views, k) on the held-out ones. A linear head is fitted on each crop's mean
        features over views while the design is searched (8 times fewer rows, the same choice
        on the WT crops), on every view with ``views``."""
        tr, te = splits[f]
        with _one_thread():
            if not linear:
                head = fit_head(arrays[key][tr], y[tr], k, config, l2)
                return head, head_logits(head, arrays[key][te])
            Z = reduced(key, name, r)[3]
            params = fit_linear(
                Z[tr] if views else Z[tr].mean(1, keepdims=True), y[tr], k, config, l2, init
            )
            return params, Z[te] @ params[0].T + params[1]

    total = n_candidates * n_splits + 1
    step = 0
    candidates = [design + (l2,) for design in designs for l2 in l2s]
    memo = _InnerCVMemo(config, arrays, y, candidates) if n_splits else None
    stored = memo.load_head(width, k, arrays) if (memo is not None and linear) else None
    if stored is not None:  # the same crops, labels and settings: the same head
        yield Progress(total, total, "model design chosen (stored result for these crops)")
        return stored
    splits = (
        _inner_splits(y, config.inner_folds, config.seed, config.inner_repeats) if n_splits else []
    )
    scores, oofs = memo.load() if memo is not None else ({}, {})
    if scores:
        step = total - 1
        yield Progress(step, total, "choosing the model design: stored result for these crops")
    for key, name, r in designs if not scores else ():
        warm: dict[int, object] = {}
        for l2 in l2s:  # strong to weak L2, warm-started
            # one out-of-fold prediction of every crop per inner repeat, stacked
            oof = np.zeros((n_repeats, len(y), arrays[key].shape[1], k), np.float32)
            for f, (_, te) in enumerate(splits):
                warm[f], oof[f // per_repeat, te] = inner_fit(key, name, r, l2, f, warm.get(f))
                step += 1
                yield Progress(step, total, f"choosing the model design: fit {step} of {total}")
            if splits:
                oof = oof.reshape(-1, *oof.shape[2:])
                scores[(key, name, r, l2)] = _oof_score(oof, y_oof, k, config.prior_correction)
                oofs[(key, name, r, l2)] = oof
    if memo is not None and len(scores) == len(candidates):
        memo.save(scores, oofs)
    members, key, oof = _choose_members(designs, l2s, scores, oofs, y_oof, k, config, linear)
    if linear and oof is not None:
        # the chosen members' out-of-fold logits from fits on every view, as the final head is
        # fitted: the prior shift and the calibration are those of such a head
        full = np.zeros((n_repeats, len(y), *oof.shape[1:]), np.float32)
        for _, name, r, l2 in members:
            for f, (_, te) in enumerate(splits):
                full[f // per_repeat, te] += inner_fit(key, name, r, l2, f, views=True)[1]
        oof = full.reshape(oof.shape) / len(members)
    # the linear head's penalty is on the MEAN loss, so a fixed prior per crop means
    # l2 x n = constant (AdamW's decoupled weight decay of an MLP head is left as validated)
    l2_factor = (
        float(np.mean([len(tr) for tr, _ in splits])) / len(y)
        if (config.rescale_l2 and splits and linear)
        else 1.0
    )
    shift = np.zeros(k, np.float32)
    if config.prior_correction and oof is not None:
        shift = fit_prior_shift(oof, y_oof, k)
    if linear:
        # every member is a linear map of the (standardised) features: their mean logits are
        # one Linear over all features (zero weight on columns that no member uses)
        weight = np.zeros((k, width), np.float64)
        bias = np.zeros(k, np.float64)
        mu_full = np.zeros(width, np.float32)
        sd_full = np.ones(width, np.float32)
        for _, name, r, l2 in members:
            mu, sd, basis, Z = reduced(key, name, r)
            with _one_thread():
                w_r, b = fit_linear(Z, y, k, config, l2 * l2_factor)
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
    else:
        with _one_thread():
            head = fit_head(arrays[key], y, k, config, members[0][3])
    head.logit_shift.copy_(torch.from_numpy(shift))
    inner_acc = None
    calibration = None
    if oof is not None:
        inner_acc = float((tta_proba(oof + shift).argmax(1) == y_oof).mean())
        calibration = fit_oof_calibration(tta_proba(oof + shift), y_oof, k)
    info = {
        "preprocessing": key,
        "members": [{"feature_set": m[1], "pca": int(m[2]), "l2": float(m[3])} for m in members],
        "inner_cv": [
            {
                "preprocessing": c[0].to_dict() if hasattr(c[0], "to_dict") else c[0],
                "feature_set": c[1],
                "pca": int(c[2]),
                "l2": float(c[3]),
                "accuracy": round(s[0], 4),
                "log_loss": round(-s[1], 4),
            }
            for c, s in scores.items()
        ],
        "l2_refit_factor": l2_factor,
        "logit_shift": shift.tolist(),
        "inner_cv_accuracy_corrected": inner_acc,
        "calibration": calibration,
    }
    if by_spread is not None:
        info["design_by_spread"] = by_spread
    yield Progress(
        total,
        total,
        f"model design chosen ({len(members)} combined)",
        {"inner_acc": inner_acc or 0.0},
    )
    if memo is not None and linear:
        memo.save_head(head, info)
    return head, info


def _moved_reference(X: np.ndarray, y: np.ndarray, reference, k: int) -> np.ndarray:
    """``X`` with the reference crops' features moved by :func:`.heads.reference_shift`."""
    move = reference_shift(X, y, reference, k)
    if not move.any():
        return X
    X = X.copy()
    X[np.asarray(reference, bool)] += move
    return X


@contextlib.contextmanager
def _one_thread():
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
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


# settings that do not change the inner-CV result of a head search
_NOT_SEARCH = ("device", "cache_dir", "predict_views", "finetune_epochs", "finetune_lr")
INNER_CV_FORMAT = "inner-cv-v2"  # bump when the search computes something else for the same input


class _InnerCVMemo:
    """The inner-CV scores and out-of-fold logits of a head search, kept in the feature cache
    (``inner-cv/<key>.npz``) and keyed by a hash of the features, targets, candidate designs
    and settings: training again on the same crops reuses them instead of repeating hundreds
    of fits (the same result). Off when the feature cache is off."""

    def __init__(self, config: TrainingConfig, arrays: dict, y: np.ndarray, candidates: list):
        import hashlib
        import json

        from .features import feature_cache_dir

        self.candidates = candidates
        root = feature_cache_dir(config.cache_dir)
        self.path = None
        if root is None:
            return
        h = hashlib.sha1(INNER_CV_FORMAT.encode())
        settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_SEARCH}
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        for key, X in arrays.items():
            h.update(json.dumps(key.to_dict() if key is not None else None).encode())
            h.update(str(X.shape).encode())
            h.update(np.ascontiguousarray(X, dtype=np.float32).data)
        h.update(np.asarray(y, np.int64).tobytes())
        labels = [(c[0].to_dict() if c[0] is not None else None, *c[1:]) for c in candidates]
        h.update(json.dumps(labels, sort_keys=True).encode())
        self.path = root / "inner-cv" / f"{h.hexdigest()[:24]}.npz"

    def load(self) -> tuple[dict, dict]:
        """(scores, out-of-fold logits) by candidate, or two empty dicts."""
        if self.path is None or not self.path.is_file():
            return {}, {}
        try:
            with np.load(self.path) as data:
                scores, oofs = data["scores"], data["oofs"]
            if scores.shape != (len(self.candidates), 2) or len(oofs) != len(self.candidates):
                return {}, {}
            os.utime(self.path)
        except (OSError, ValueError, KeyError, EOFError):
            return {}, {}
        return (
            {c: (float(a), float(b)) for c, (a, b) in zip(self.candidates, scores, strict=True)},
            dict(zip(self.candidates, oofs, strict=True)),
        )

    def _head_path(self):
        return self.path.with_name(self.path.stem + "-head.npz")

    def load_head(self, width: int, k: int, arrays: dict):
        """``(head, info)`` of the linear head trained last on this input, or None."""
        import json

        from .classifier import PooledHead

        if self.path is None or not self._head_path().is_file():
            return None
        try:
            with np.load(self._head_path()) as data:
                tensors = {name: torch.from_numpy(data[name].copy()) for name in data.files}
            info = json.loads(bytes(tensors.pop("info").numpy()).decode())
            head = PooledHead(width, k)
            head.load_state_dict(tensors)
            os.utime(self._head_path())
        except (OSError, ValueError, KeyError, EOFError, RuntimeError, TypeError):
            return None
        by_dict = {
            json.dumps(key.to_dict() if key is not None else None, sort_keys=True): key
            for key in arrays
        }
        stored = json.dumps(info["preprocessing"], sort_keys=True)
        if stored not in by_dict:
            return None
        info["preprocessing"] = by_dict[stored]
        head.eval()
        return head, info

    def save_head(self, head, info: dict) -> None:
        """Keep the final linear head and its info (nothing if the cache cannot be written)."""
        import json

        if self.path is None:
            return
        from ..atomic import atomic_path

        key = info["preprocessing"]
        text = json.dumps({**info, "preprocessing": key.to_dict() if key is not None else None})
        tensors = {name: t.detach().cpu().numpy() for name, t in head.state_dict().items()}
        tensors["info"] = np.frombuffer(text.encode(), np.uint8)
        with contextlib.suppress(OSError), atomic_path(self._head_path()) as tmp:
            np.savez(tmp, **tensors)

    def save(self, scores: dict, oofs: dict) -> None:
        """Keep a finished search (nothing if the cache cannot be written)."""
        if self.path is None:
            return
        from ..atomic import atomic_path

        with contextlib.suppress(OSError), atomic_path(self.path) as tmp:
            np.savez(
                tmp,
                scores=np.asarray([scores[c] for c in self.candidates], np.float64),
                oofs=np.stack([oofs[c] for c in self.candidates]).astype(np.float32),
            )


def _choose_members(designs, l2s, scores, oofs, y, k, config, linear):
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
            options.append((_oof_score(oof, y, k, config.prior_correction), members, key, oof))
        _, members, key, oof = max(options, key=lambda o: rank(o[0]))
        return members, key, oof
    best = max((best_l2(d) for d in designs), key=lambda c: rank(scores[c]))
    return [best], best[0], oofs[best]


# --------------------------------------------------------------------------- full training


def _device(config: TrainingConfig):
    if config.device:
        return torch.device(config.device)
    from .backbones import best_device

    return best_device()


def _finetune(model, images, y, config: TrainingConfig, device) -> Generator[Progress, None, None]:
    """Fine-tune the last ``finetune_blocks`` blocks + head end to end; early stopping."""
    from .features import dihedral
    from .last_blocks import tuned_source

    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    k = len(model.classes)
    val = validation_mask(y, k, config.val_fraction, rng)
    tr, va = np.flatnonzero(~val), np.flatnonzero(val)
    x_all = model.preprocess(images)  # preprocessed once; views are applied on the fly
    yt = torch.from_numpy(y).long()
    weights = class_weights(y, k, config.class_balance).to(device)
    model.backbone.freeze(config.finetune_blocks)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.finetune_lr)
    bs = max(8, min(config.batch_size, 32))

    def val_loss():
        """Class-weighted log loss of the view-averaged predictions on the validation crops."""
        model.eval()
        with torch.no_grad():
            tot = 0.0
            for s in range(0, len(va), bs):
                b = va[s : s + bs]
                xb = x_all[b].to(device)
                p = sum(torch.softmax(model(dihedral(xb, v)), 1) for v in range(config.views))
                p = p / config.views
                tot += float(
                    torch.nn.functional.nll_loss(
                        torch.log(p + 1e-8), yt[b].to(device), weight=weights, reduction="sum"
                    )
                )
        return tot / max(len(va), 1)

    best = val_loss() if len(va) else np.inf
    best_state = {key: t.detach().clone() for key, t in model.state_dict().items()}
    bad = 0
    for epoch in range(config.finetune_epochs):
        model.eval()  # BatchNorm statistics and dropout stay as trained; gradients still flow
        order = rng.permutation(tr)
        for s in range(0, len(order), bs):
            b = order[s : s + bs]
            xb = dihedral(x_all[b].to(device), int(rng.integers(8)))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yt[b].to(device), weight=weights)
            loss.backward()
            opt.step()
        vloss = val_loss() if len(va) else 0.0
        if vloss < best - 1e-5:
            best, bad = vloss, 0
            best_state = {key: t.detach().clone() for key, t in model.state_dict().items()}
        else:
            bad += 1
        yield Progress(
            epoch + 1,
            config.finetune_epochs,
            f"fine-tuning the network: pass {epoch + 1} of {config.finetune_epochs}",
            {"val_loss": vloss},
        )
        if bad >= config.patience:
            break
    model.load_state_dict(best_state)
    model.backbone.freeze(0)
    model.eval()
    model.backbone.weights_source = tuned_source(model.backbone, config.finetune_blocks)


def candidate_features(
    backbone, images, config: TrainingConfig, device=None
) -> Generator[Progress, None, dict]:
    """Cached features of ``images`` for every candidate preprocessing of ``config``.

    Returns {Preprocessing: (n, views, D) array}."""
    from .features import extract_features

    preps = config.preprocessings()
    arrays = {}
    for i, prep in enumerate(preps):
        label = f"{prep.size} px {prep.geometry}"

        def change(report: Progress, i: int = i, label: str = label) -> Progress:
            """``report`` as progress over all candidate preprocessings."""
            return Progress(
                i * len(images) + report.step,
                len(preps) * len(images),
                f"{report.message} (input {i + 1} of {len(preps)}: {label})",
            )

        arrays[prep] = yield from relay(
            extract_features(
                backbone,
                images,
                prep,
                views=config.views,
                cache_dir=config.cache_dir,
                device=device,
            ),
            change,
        )
    yield Progress(1, 1, "every crop read by the network")
    return arrays


def train_classifier(
    images: Sequence,
    targets,
    classes: Sequence[str],
    config: TrainingConfig | None = None,
    reference: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Generator[Progress, None, ChromosomeClassifier]:
    """Train a ``ChromosomeClassifier`` on RGB crops (arrays or paths) with integer targets;
    ``reference``: which crops come from a reference set, ``groups``: the spread of each crop
    (see :func:`train_head`).

    Returns the classifier, ``metadata["metrics"]`` holding the inner-CV concordance.
    """
    from .. import __version__
    from .backbones import build_backbone
    from .classifier import ChromosomeClassifier, check_views

    config = config or TrainingConfig()
    check_views(config.predict_views)
    classes = [str(c) for c in classes]
    y = np.asarray(targets, int)
    images = list(images)
    if len(images) != len(y):
        raise ChromosortError(f"{len(images)} images but {len(y)} targets")
    if len(classes) < 2:
        raise ChromosortError("training needs at least 2 classes")
    counts = np.bincount(y, minlength=len(classes))
    if len(counts) > len(classes) or y.min() < 0:
        raise ChromosortError("targets must be class indices 0..k-1")
    if (counts == 0).any():
        empty = [c for c, n in zip(classes, counts, strict=False) if n == 0]
        raise ChromosortError(f"no training crops for class(es) {', '.join(empty)}")
    t0 = time.perf_counter()
    device = _device(config)
    backbone = build_backbone(config.backbone, config.weights).to(device)
    arrays = yield from candidate_features(backbone, images, config, device)
    head, info = yield from train_head(arrays, y, classes, config, reference, groups)
    backbone = backbone.cpu()
    prep = info.pop("preprocessing")
    model = ChromosomeClassifier(backbone, head, classes, prep, "pooled")
    model.to(device)
    if config.finetune_blocks > 0:
        yield from _finetune(model, images, y, config, device)
    model.cpu().eval()
    model.metadata.update(
        package_version=__version__,
        prediction_views=check_views(config.predict_views),
        weights_source=backbone.weights_source,
        training={
            "n": int(len(y)),
            "counts": {c: int(n) for c, n in zip(classes, counts, strict=False)},
            "config": config.to_dict(),
            "chosen": info,
            "seconds": round(time.perf_counter() - t0, 2),
        },
        metrics={"inner_cv_accuracy": info.get("inner_cv_accuracy_corrected")},
    )
    yield Progress(1, 1, "training done")
    return model


def train_from_folder(
    root, config: TrainingConfig | None = None, reference_root=None
) -> Generator[Progress, None, ChromosomeClassifier]:
    """``train_classifier`` on a folder-per-class image set; metadata records the folder.

    ``reference_root``: a second set (e.g. the published WT crops), its classes matched to
    ``root``'s by name (case ignored), trained on as a reference set moved onto the look of
    ``root``'s crops (:func:`.heads.reference_shift`), without the prior correction (the class
    frequencies of a mix of two sets say nothing about the user's spreads; it cost the share
    errors of the own-labels validation, docs/validation.md). When ``root``'s manifest names
    the spread of its crops (3 or more spreads), the head's design and whether the reference is
    moved are chosen leave-one-spread-out on them (``config.design_by_spread``)."""
    import dataclasses

    from .spread_design import spread_groups

    paths, targets, classes = scan_folder(root)
    reference = None
    groups = None
    if reference_root is not None:
        groups = spread_groups(root, paths)
        config = dataclasses.replace(config or TrainingConfig(), prior_correction=False)
        ref_paths, ref_targets, ref_classes = scan_folder(reference_root)
        index = {c.lower(): i for i, c in enumerate(classes)}
        unknown = [c for c in ref_classes if c.lower() not in index]
        if unknown:
            raise ChromosortError(
                f"{reference_root} has class(es) {', '.join(unknown)} that {root} lacks"
            )
        targets = np.concatenate([targets, [index[ref_classes[t].lower()] for t in ref_targets]])
        reference = np.r_[np.zeros(len(paths), bool), np.ones(len(ref_paths), bool)]
        paths = [*paths, *ref_paths]
        if groups is not None:
            groups = np.r_[groups, np.full(len(ref_paths), -1)]
    model = yield from train_classifier(paths, targets, classes, config, reference, groups)
    if reference_root is not None:
        model.metadata["training"]["reference_dataset"] = str(Path(reference_root).resolve())
    model.metadata["training"]["dataset"] = str(Path(root).resolve())
    model.metadata["training"]["empty_classes_left_out"] = empty_classes(root, classes)
    return model


def crossvalidate_features(
    features,
    y,
    classes: Sequence[str],
    config: TrainingConfig,
    folds: int = 5,
    repeats: int = 1,
) -> Generator[Progress, None, dict]:
    """Outer stratified k-fold CV of the head on cached features (the whole design selection
    of ``train_head`` nested inside every training fold). ``features``: as for train_head.
    Returns :func:`.metrics.crossvalidate`'s report with ``chosen_per_fold``."""
    from ..analysis.metrics import crossvalidate

    y = np.asarray(y, int)
    arrays = dict(features) if isinstance(features, dict) else {None: features}
    chosen = []

    def fit_predict(tr, te):
        """Train the head on fold ``tr``; return its predicted class indices for ``te``."""
        subsets = {key: X[tr] for key, X in arrays.items()}
        head, info = yield from train_head(subsets, y[tr], classes, config)
        X_te = arrays[info["preprocessing"]][te, : config.views]
        chosen.append(_design_summary(info))
        return tta_proba(head_logits(head, X_te)).argmax(1)

    result = yield from crossvalidate(fit_predict, y, classes, folds, repeats, config.seed)
    result["chosen_per_fold"] = chosen
    return result


def _design_summary(info: dict) -> dict:
    prep = info["preprocessing"]
    out = {"members": info["members"]}
    if prep is not None:
        out.update(input_size=prep.size, geometry=prep.geometry)
    return out


def crossvalidate_folder(
    root, config: TrainingConfig | None = None, folds: int = 5, repeats: int = 1
) -> Generator[Progress, None, dict]:
    """Features once for the whole folder, then nested CV of the head over the folds; returns
    the cross-validation report with the backbone and its weights."""
    from .backbones import build_backbone

    config = config or TrainingConfig()
    if config.finetune_blocks:
        raise ChromosortError("crossval evaluates the frozen-backbone head; use finetune_blocks=0")
    paths, y, classes = scan_folder(root)
    device = _device(config)
    backbone = build_backbone(config.backbone, config.weights).to(device)
    arrays = yield from candidate_features(backbone, paths, config, device)
    result = yield from crossvalidate_features(arrays, y, classes, config, folds, repeats)
    result["backbone"] = config.backbone
    result["weights"] = backbone.weights_source
    return result
