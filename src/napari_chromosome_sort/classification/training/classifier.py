"""Training a whole classifier: every crop read once by the frozen backbone for each candidate
preprocessing (cached features), the head trained on them (:func:`.head.train_head`), then
optionally the last backbone blocks fine-tuned (:mod:`.finetune`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_chromosome_sort import __version__
from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.features import extract_features
from napari_chromosome_sort.classification.image_match import record_training_images
from napari_chromosome_sort.classification.models.backbones import best_device, build_backbone
from napari_chromosome_sort.classification.models.classifier import (
    ChromosomeClassifier,
    check_views,
)
from napari_chromosome_sort.classification.training.finetune import finetune
from napari_chromosome_sort.classification.training.folders import empty_classes, scan_folder
from napari_chromosome_sort.classification.training.head import train_head
from napari_chromosome_sort.classification.training.spread_design import spread_groups
from napari_chromosome_sort.classification.training.spread_priors import (
    choose_spread_priors,
    spread_priors_apply,
)
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress, relay


def training_device(config: TrainingConfig):
    """The torch device of ``config`` (default: the best this machine has)."""
    if config.device:
        return torch.device(config.device)
    return best_device()


def candidate_features(
    backbone, images, config: TrainingConfig, device=None
) -> Generator[Progress, None, dict]:
    """Cached features of ``images`` for every candidate preprocessing of ``config``.

    Returns {Preprocessing: (n, views, D) array}."""
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
    (see :func:`train_head`); with both (3 or more spreads), whether prediction re-estimates
    each spread's class mix is chosen leave-one-spread-out and recorded in
    ``metadata["prediction_priors"]`` (:mod:`.spread_priors`).

    Returns the classifier, ``metadata["metrics"]`` holding the inner-CV concordance.
    """
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
    device = training_device(config)
    backbone = build_backbone(config.backbone, config.weights).to(device)
    arrays = yield from candidate_features(backbone, images, config, device)
    head, info = yield from train_head(arrays, y, classes, config, reference, groups)
    prep = info.pop("preprocessing")
    spread_priors = None
    if spread_priors_apply(reference, groups):  # each spread's class mix at prediction
        spread_priors = yield from choose_spread_priors(
            arrays[prep], y, classes, config, reference, groups, info
        )
    backbone = backbone.cpu()
    model = ChromosomeClassifier(backbone, head, classes, prep, "pooled")
    model.to(device)
    if config.finetune_blocks > 0:
        yield from finetune(model, images, y, config, device)
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
    if spread_priors is not None:
        model.metadata["prediction_priors"] = spread_priors
    record_training_images(model, images, reference)  # Predict warns on spreads unlike these
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
