"""How well a head trained this way calls crops it never saw: an outer stratified k-fold
cross-validation on cached features, the whole design selection of :func:`.head.train_head`
nested inside every training fold."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from napari_chromosome_sort.analysis.metrics import crossvalidate
from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.backbones import build_backbone
from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba
from napari_chromosome_sort.classification.training.classifier import (
    candidate_features,
    training_device,
)
from napari_chromosome_sort.classification.training.folders import scan_folder
from napari_chromosome_sort.classification.training.head import train_head
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress


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
    config = config or TrainingConfig()
    if config.finetune_blocks:
        raise ChromosortError("crossval evaluates the frozen-backbone head; use finetune_blocks=0")
    paths, y, classes = scan_folder(root)
    device = training_device(config)
    backbone = build_backbone(config.backbone, config.weights).to(device)
    arrays = yield from candidate_features(backbone, paths, config, device)
    result = yield from crossvalidate_features(arrays, y, classes, config, folds, repeats)
    result["backbone"] = config.backbone
    result["weights"] = backbone.weights_source
    return result
