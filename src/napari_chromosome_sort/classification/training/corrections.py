"""The correction loop on one predicted spread, without a viewer.

The calls are walked from the least to the most confident; a call corrected by hand is saved at
once to a labelled-crop dataset (with the spread and sample it came from) and marked
``corrected`` in the calls table; :meth:`CorrectionSession.retrain` refits the model's head, its
design kept, on cached features (the crops it was trained on + the dataset's crops + this
session's corrections) and calls the spread's other chromosomes again. The widget
(``_widgets/review.py``), scripts and the validation drive the same object.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Generator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress

# The features, models and training modules import torch: the methods that use them import
# them, so that the calls-table helpers here (CORRECTED, confidence) stay light for the widgets.

CORRECTED = "corrected"  # boolean column of the calls table: the class was set by hand
HAND = "hand"  # ``called_by`` of a corrected call


def confidence(table: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Each call's confidence: the probability of its most probable class."""
    columns = [f"p_{c}" for c in classes]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ChromosortError(f"the calls table lacks the probability columns {missing}")
    return table[columns].to_numpy(float).max(axis=1) if len(table) else np.zeros(0)


def least_sure_first(table: pd.DataFrame, classes: Sequence[str]) -> list[int]:
    """Labels of the calls not yet corrected, from the least to the most confident (ties in
    label order)."""
    sure = confidence(table, classes)
    labels = table["label"].astype(int).to_numpy()
    done = corrected_mask(table)
    order = np.lexsort((labels, sure))
    return [int(labels[i]) for i in order if not done[i]]


def least_sure_by_class(table: pd.DataFrame, classes: Sequence[str]) -> list[int]:
    """Labels of the calls not yet corrected, the called classes taken in turn (in the model's
    class order) and the least sure of each class first: a spread's rare calls, where a
    one-type spread's errors gather, are reached within the first few steps."""
    order = least_sure_first(table, classes)
    called = dict(zip(table["label"].astype(int), table["class"].astype(str), strict=True))
    names = [str(c) for c in classes]
    names += sorted({called[label] for label in order} - set(names))
    queues = [[label for label in order if called[label] == name] for name in names]
    walk: list[int] = []
    for step in range(max((len(q) for q in queues), default=0)):
        walk.extend(q[step] for q in queues if step < len(q))
    return walk


def corrected_mask(table: pd.DataFrame) -> np.ndarray:
    """Which calls were corrected by hand (all False for a table without the column)."""
    if CORRECTED not in table.columns:
        return np.zeros(len(table), bool)
    return table[CORRECTED].fillna(False).astype(bool).to_numpy()


def apply_correction(table: pd.DataFrame, label: int, cls: str) -> pd.DataFrame:
    """A copy of the calls table with object ``label`` called ``cls`` by hand."""
    rows = table["label"].astype(int) == int(label)
    if not rows.any():
        raise ChromosortError(f"object {label} is not one of the spread's calls")
    out = table.copy()
    out[CORRECTED] = corrected_mask(out)
    if "called_by" not in out.columns:
        out["called_by"] = "model"
    out["called_by"] = out["called_by"].astype(object)
    out.loc[rows, "class"] = str(cls)
    out.loc[rows, CORRECTED] = True
    out.loc[rows, "called_by"] = HAND
    return out


def recall(table: pd.DataFrame, classes: Sequence[str], proba: np.ndarray) -> pd.DataFrame:
    """The calls table with new probabilities ``proba`` (n, k); a corrected call keeps its hand
    class, a chromatid-pair call its class, every other call the most probable class."""
    out = table.copy()
    for j, cls in enumerate(classes):
        out[f"p_{cls}"] = proba[:, j]
    by_model = called_by_model(out)
    best = np.asarray(classes, dtype=object)[proba.argmax(1)] if len(proba) else []
    out.loc[by_model, "class"] = np.asarray(best, dtype=object)[by_model]
    return out


def called_by_model(table: pd.DataFrame) -> np.ndarray:
    """Which calls the model made (not corrected by hand, nor set by a rule such as a
    chromatid pair's C): those a retraining calls again."""
    by_model = ~corrected_mask(table)
    if "called_by" in table.columns:
        by_model &= table["called_by"].astype(str).to_numpy() == "model"
    return by_model


def class_index(classes: Sequence[str], name: str) -> int:
    """Index of class ``name`` among ``classes`` (a folder ``a`` is class ``A``), else -1."""
    lowered = [str(c).lower() for c in classes]
    name = str(name)
    if name in classes:
        return list(classes).index(name)
    return lowered.index(name.lower()) if name.lower() in lowered else -1


def source_of(sample: str, spread: str) -> str:
    """How a corrected crop's origin is written in the dataset's ``source`` column:
    ``sample/spread file name``."""
    name = Path(str(spread)).name or str(spread)
    return f"{sample}/{name}" if sample else name


def _training_views(model) -> int:
    config = (model.metadata.get("training") or {}).get("config") or {}
    return int(config.get("views") or model.prediction_views)


class CorrectionSession:
    """One predicted spread under correction.

    ``model``: the ChromosomeClassifier that made ``prediction`` (a
    :class:`.predict.SpreadPrediction`); ``dataset``: a :class:`.dataset.CropDataset` that
    receives each correction at once; ``training_folder``: the folder-per-class crops the head
    is retrained on beside the dataset (None: the model's own training folder when it exists).
    Call :meth:`prepare` (a generator: the features) before :meth:`retrain`.
    """

    def __init__(
        self,
        model,
        prediction,
        dataset,
        spread: str,
        sample: str = "",
        training_folder: str | Path | None = None,
    ):
        self.model = model
        self.classes = [str(c) for c in model.classes]
        self.prediction = prediction
        self.table = prediction.table.copy()
        self.table[CORRECTED] = corrected_mask(self.table)
        self.dataset = dataset
        self.spread, self.sample = str(spread), str(sample)
        self.training_folder = self._training_folder(training_folder)
        self.crops = {int(c.label): c for c in prediction.crops}
        self.files: dict[int, Path] = {}  # label -> its crop in the dataset
        self.rejected: list[int] = []  # objects marked "not a chromosome", out of the calls
        self.features: np.ndarray | None = None  # the spread's crops (n, views, D)
        self.base: tuple[np.ndarray, np.ndarray] | None = None  # training crops (X, y)
        self._refit: HeadRefit | None = None
        self.spread_priors: np.ndarray | None = None  # the last retraining's mix (spread_mix)

    def _training_folder(self, given) -> Path | None:
        if given:
            folder = Path(given)
            if not folder.is_dir():
                raise ChromosortError(f"training crops folder {folder} does not exist")
            return folder
        stored = (self.model.metadata.get("training") or {}).get("dataset")
        return Path(stored) if stored and Path(stored).is_dir() else None

    # ------------------------------------------------------------------ walking and correcting
    def least_sure(self, by_class: bool = False) -> list[int]:
        """The calls still to review, least confident first (``by_class``: the called classes
        in turn, :func:`least_sure_by_class`)."""
        if by_class:
            return least_sure_by_class(self.table, self.classes)
        return least_sure_first(self.table, self.classes)

    @property
    def n_corrected(self) -> int:
        """How many calls of the spread were corrected by hand."""
        return int(corrected_mask(self.table).sum())

    def correct(self, label: int, cls: str) -> Path:
        """Call object ``label`` ``cls`` by hand and save its crop to the dataset now (a crop
        corrected before is moved to the new class); returns the crop's file."""
        if cls not in self.classes:
            raise ChromosortError(f"class {cls!r} is not one of the model's {self.classes}")
        label = int(label)
        table = apply_correction(self.table, label, cls)
        crop = self.crops.get(label)
        if crop is None:
            raise ChromosortError(f"object {label} has no crop in this prediction")
        if label in self.files:
            path = self.dataset.relabel(self.files[label], cls)
        else:
            row = table.loc[table["label"].astype(int) == label].iloc[0]
            bbox = [int(row[k]) for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1") if k in row]
            path = self.dataset.add(
                crop.pixels,
                cls,
                source=source_of(self.sample, self.spread),
                label=label,
                bbox=bbox if len(bbox) == 4 else None,
                polarity=crop.polarity,
            )
        self.files[label] = Path(path)
        self.table = table
        return Path(path)

    def reject(self, label: int) -> None:
        """Mark object ``label`` as not a single chromosome (a piece, a cluster, debris): it
        leaves the calls, so the readout's shares and the retraining no longer count it; a crop
        it was corrected to before is taken out of the dataset."""
        label = int(label)
        keep = self.table["label"].astype(int).to_numpy() != label
        if keep.all():
            raise ChromosortError(f"object {label} is not one of the spread's calls")
        if label in self.files:
            self.dataset.remove(self.files.pop(label))
        self.table = self.table.loc[keep].reset_index(drop=True)
        if self.features is not None:
            self.features = self.features[keep]
        self.rejected.append(label)

    # ------------------------------------------------------------------ features and retraining
    def prepare(self) -> Generator[Progress, None, None]:
        """Features of the spread's crops and of the training crops (the disk cache makes the
        second time fast)."""
        from napari_chromosome_sort.classification.features import extract_features
        from napari_chromosome_sort.classification.training.folders import scan_folder

        views = _training_views(self.model)
        prep = self.model.preprocessing
        backbone = self.model.backbone
        pixels = [self.crops[int(label)].pixels for label in self.table["label"]]
        calls = max(views, self.model.prediction_views)  # the spread is called on these views
        self.features = yield from extract_features(backbone, pixels, prep, views=calls)
        images, targets = [], []
        for folder in (self.training_folder, self.dataset.root):
            if folder is None or not Path(folder).is_dir():
                continue
            try:
                paths, y, classes = scan_folder(folder)
            except ChromosortError:
                continue  # fewer than two classes yet: nothing to learn from on its own
            index = [class_index(self.classes, c) for c in classes]
            for path, k in zip(paths, y, strict=True):
                if index[k] >= 0 and not self._is_session_file(path):
                    images.append(path)
                    targets.append(index[k])
        X = yield from extract_features(backbone, images, prep, views=views, cache_dir="auto")
        self.base = X, np.asarray(targets, int)
        self._refit = None
        config = retrain_config(self.model)
        if len(X) and HeadRefit.fits(self.model, config):
            yield Progress(0, 1, "principal axes of the training crops")
            self._refit = HeadRefit(X, config, len(self.classes))

    def _is_session_file(self, path) -> bool:
        return any(Path(path).name == f.name for f in self.files.values())

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and targets the head is retrained on: the training crops, then this
        session's corrections."""
        if self.features is None or self.base is None:
            raise ChromosortError("prepare the session (features) before retraining")
        rows = np.flatnonzero(corrected_mask(self.table))
        y_new = [self.classes.index(str(c)) for c in self.table["class"].to_numpy()[rows]]
        views = self.base[0].shape[1]
        X = np.concatenate([self.base[0], self.features[rows, :views]])
        y = np.concatenate([self.base[1], np.asarray(y_new, int)])
        return X, y

    def retrain(self, spread_mix: bool = False) -> Generator[Progress, None, pd.DataFrame]:
        """Refit the head (the model's design kept) on the training set, call the spread's
        uncorrected chromosomes again; returns the new calls table (``self.model`` is the new
        model). ``spread_mix``: also estimate the spread's class mix from all its objects, the
        corrected ones (and chromatid pairs, C) counted with their classes
        (:func:`.known_priors.adapt_priors_known`), and call the others with their posteriors
        re-weighted to it (off by default: docs/validation.md, Correcting the least sure); the
        estimate is kept in ``self.spread_priors``."""
        from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba
        from napari_chromosome_sort.classification.training.head import train_head

        X, y = self.training_set()
        present = np.bincount(y, minlength=len(self.classes))
        if (present > 0).sum() < 2:
            raise ChromosortError(
                "retraining needs crops of at least two classes: choose the folder of crops the "
                "model was trained on"
            )
        config = retrain_config(self.model)
        if self._refit is not None:
            yield Progress(0, 1, "refitting the classifier on the corrections")
            head, info = self._refit.fit(X[len(self.base[0]) :], y)
        else:  # not a single linear design: the head's training with its design fixed
            head, info = yield from train_head(X, y, self.classes, config)
        shift = getattr(self.model.head, "logit_shift", None)
        if shift is not None:  # the prior correction fitted at training, kept
            head.logit_shift.copy_(shift)
        self.model = with_head(self.model, head, info, y, self.classes)
        views = self.model.prediction_views
        proba = tta_proba(head_logits(head, self.features[:, :views]))
        if spread_mix:
            proba, self.spread_priors = self._spread_mix(proba)
        self.table = recall(self.table, self.classes, proba)
        return self.table

    def _spread_mix(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The retrained head's posteriors re-weighted to the spread's class mix (estimated with
        the corrections known), and that mix."""
        from napari_chromosome_sort.classification.known_priors import adapt_priors_known
        from napari_chromosome_sort.classification.predict import (
            PRIOR_PSEUDO_COUNTS,
            calibration_priors,
        )

        done = ~called_by_model(self.table)  # by hand, or by rule (a chromatid pair is C)
        known = np.full(len(self.table), -1)
        names = self.table["class"].astype(str).to_numpy()
        known[done] = [self.classes.index(c) for c in names[done]]
        base = calibration_priors(self.model)
        return adapt_priors_known(proba, known, base, pseudo_counts=PRIOR_PSEUDO_COUNTS)


def retrain_config(model):
    """The model's training settings with its chosen design fixed (one candidate: no design
    search and no inner cross-validation: the prior correction fitted at training is kept), the
    feature cache off (the features are given)."""
    training = model.metadata.get("training") or {}
    stored = dict(training.get("config") or {})
    fields = TrainingConfig.__dataclass_fields__
    known = {k: v for k, v in stored.items() if k in fields}
    for name in ("preprocessing_grid", "feature_set_grid", "pca_grid", "l2_grid"):
        if isinstance(known.get(name), list):
            known[name] = tuple(tuple(v) if isinstance(v, list) else v for v in known[name])
    chosen = training.get("chosen") or {}
    members = chosen.get("members") or []
    config = TrainingConfig(**known)
    if len(members) == 1:
        member = members[0]
        # the L2 the final head was refitted with (no inner folds here to rescale it by)
        l2 = float(member["l2"]) * float(chosen.get("l2_refit_factor") or 1.0)
        config = replace(config, feature_set=member["feature_set"], pca=int(member["pca"]), l2=l2)
    return replace(
        config,
        cache_dir=None,
        combine="best",
        prior_correction=False,
        views=_training_views(model),
    )


def with_head(model, head, info: dict, y: np.ndarray, classes: Sequence[str]):
    """A copy of ``model`` (sharing its frozen backbone) with a new head, its training record
    updated (crops, counts, members; the prior correction and calibration of the training
    kept)."""
    from napari_chromosome_sort.classification.models.classifier import ChromosomeClassifier

    new = ChromosomeClassifier(
        model.backbone, head, list(classes), model.preprocessing, model.head_kind
    )
    new.metadata = copy.deepcopy(model.metadata)
    training = new.metadata.setdefault("training", {})
    counts = np.bincount(y, minlength=len(classes))
    chosen = dict(training.get("chosen") or {})  # the prior correction and calibration kept
    chosen["members"] = info["members"]  # with the L2 the head was fitted with
    chosen["l2_refit_factor"] = 1.0
    training.update(
        n=int(len(y)),
        counts={c: int(n) for c, n in zip(classes, counts, strict=True)},
        chosen=chosen,
        retrained_on_corrections=True,
    )
    return new.eval()


@functools.cache
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # looked up once: a look-up takes milliseconds


def one_thread():
    """numpy's BLAS on one thread: small products, and on a busy machine more threads only
    wait for each other."""
    return _blas().limit(limits=1)


class HeadRefit:
    """The model's chosen linear design (feature set, principal axes, L2) refitted on new
    targets: the standardisation and principal axes of the training crops are computed once,
    each refit is one L-BFGS fit on their projections (the first from scratch, as training
    fits; later ones started from the last fit), so a refit takes well under a second."""

    def __init__(self, X_base: np.ndarray, config, k: int):
        from napari_chromosome_sort.classification.models.backbones import feature_columns
        from napari_chromosome_sort.classification.models.heads import pca_basis

        self.config, self.k = config, k
        width = X_base.shape[-1]
        if width == feature_columns(config.backbone, "all").size:
            self.columns = feature_columns(config.backbone, config.feature_set)
        else:  # features from elsewhere: all of them, as training does
            self.columns = np.arange(width)
        self.width = width
        with one_thread():
            self.mu, self.sd, basis = pca_basis(X_base[..., self.columns], int(config.pca))
            self.basis = None if basis is None else basis.astype(np.float32)
            self.Z_base = self.project(X_base)
        self.params = None

    @staticmethod
    def fits(model, config) -> bool:
        """Does ``model``'s head have one linear design this refit can reproduce?"""
        members = ((model.metadata.get("training") or {}).get("chosen") or {}).get("members")
        linear = config.hidden == 0 and config.dropout == 0
        return bool(linear and members and len(members) == 1 and config.pca is not None)

    def project(self, X: np.ndarray) -> np.ndarray:
        """Standardised features (n, views, D) on the design's columns and axes."""
        n, v = X.shape[:2]
        Z = ((X[..., self.columns] - self.mu) / self.sd).astype(np.float32)
        if self.basis is None or not n:
            return Z if self.basis is None else np.zeros((0, v, self.basis.shape[1]), np.float32)
        # as a 2-D float32 product: BLAS (a 3-D or mixed-type product is many times slower)
        return (Z.reshape(n * v, -1) @ self.basis).reshape(n, v, -1)

    def fit(self, X_new: np.ndarray, y: np.ndarray):
        """``(head, info)`` fitted on the training crops + ``X_new`` (targets ``y``, training
        crops first)."""
        import torch

        from napari_chromosome_sort.classification.models.classifier import PooledHead
        from napari_chromosome_sort.classification.models.heads import fit_linear

        with one_thread():  # small products: as training, one thread
            Z = np.concatenate([self.Z_base, self.project(X_new)])
            w, b = fit_linear(Z, y, self.k, self.config, self.config.l2, self.params)
        self.params = (w, b)
        weight = np.zeros((self.k, self.width), np.float32)
        weight[:, self.columns] = w if self.basis is None else w @ self.basis.T
        mu = np.zeros(self.width, np.float32)
        sd = np.ones(self.width, np.float32)
        mu[self.columns], sd[self.columns] = self.mu, self.sd
        head = PooledHead(self.width, self.k)
        with torch.no_grad():
            head.mu.copy_(torch.from_numpy(mu))
            head.sigma.copy_(torch.from_numpy(sd))
            head.net.weight.copy_(torch.from_numpy(weight))
            head.net.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        member = {"feature_set": self.config.feature_set, "pca": int(self.config.pca)}
        return head.eval(), {"members": [{**member, "l2": float(self.config.l2)}]}
