"""Fine-tuning the last backbone blocks, judged by the own-labels protocol.

Each of the five annotated Giemsa DDX11 spreads is held out in turn; the last blocks of the
backbone are tuned (``classification.training.last_blocks``) on the WT crops + the other four
spreads' crops labelled from their boxes, the head of ``chromosort train --reference`` is fitted
on the tuned features with the WT model's design (all layers, 256 principal components, L2 1:
fixed, so that the comparison costs one head fit per model), and the held-out spread is called
end to end (``own_labels.score``).
Beside it, on the same folds: the frozen backbone with the same head, and the average of the two
models' probabilities. WT 5-fold cross-validation of the tuned model (tuning and head inside each
training fold) checks that the published crops are still read as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import giemsa_spreads, squeezenet_weights, wt_crops_dir
from .own_labels import CLASSES, SpreadSet, fit, pooled, score


@dataclass
class TuneData:
    """Frozen part (maps, pooled taps) of the WT crops and of every spread's kept objects."""

    wt_maps: np.ndarray
    wt_pooled: np.ndarray
    wt_targets: np.ndarray
    maps: list[np.ndarray]
    pooled: list[np.ndarray]
    spreads: list[SpreadSet]  # features filled per fold


def load(cache_dir, blocks: int, views: int = 4, with_spreads: bool = True):
    """The backbone, its split index and the frozen part of every crop (of the WT crops only
    without ``with_spreads``)."""
    from napari_chromosome_sort.classification.config import TrainingConfig
    from napari_chromosome_sort.classification.features import read_crop_rgb
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.training.last_blocks import frozen_part, split_index
    from napari_chromosome_sort.files.dataset import scan_image_folder
    from napari_chromosome_sort.files.label_import import labelled_crops
    from napari_chromosome_sort.progress import run_to_end

    weights = squeezenet_weights()
    backbone = build_backbone("squeezenet1_1", str(weights) if weights.exists() else None)
    prep = TrainingConfig().preprocessings()[0]
    split = split_index(backbone, 2)  # cached once; fewer tuned blocks advance from it
    target = split_index(backbone, blocks)

    def part(images):
        maps, pooled_ = run_to_end(frozen_part(backbone, images, prep, split, views, cache_dir))
        return advance(backbone, maps, pooled_, split, target)

    paths, targets, _ = scan_image_folder(wt_crops_dir())
    wt_maps, wt_pooled = part([read_crop_rgb(p) for p in paths])
    maps, pooled_, spreads = [], [], []
    for spread in giemsa_spreads() if with_spreads else []:
        found = labelled_crops(spread.image, spread.boxes[:, 1:], spread.classes)
        m, p = part([c.pixels for c in found.crops])
        maps.append(m)
        pooled_.append(p)
        n_parts = found.objects["n_parts"].to_numpy()
        spreads.append(
            SpreadSet(spread.name, None, found.targets, n_parts, found.box_classes, found.box_of)
        )
    data = TuneData(wt_maps, wt_pooled, np.asarray(targets, int), maps, pooled_, spreads)
    return backbone, target, data


def advance(backbone, maps: np.ndarray, pooled_: np.ndarray, split: int, target: int):
    """The frozen part cut at ``target`` from the one cut at ``split`` (<= target)."""
    import torch

    from napari_chromosome_sort.classification.models.backbones import pool_taps

    if target == split:
        return maps, pooled_
    n, views = maps.shape[:2]
    out_maps, out_pooled = [], []
    with torch.no_grad():
        for s in range(0, n * views, 256):
            x = torch.from_numpy(maps.reshape(n * views, *maps.shape[2:])[s : s + 256])
            x, taps = x.float(), []
            for index in range(split, target):
                x = backbone.trunk[index](x)
                if index in backbone.taps:
                    taps.append(x)
            out_maps.append(x.half().numpy())
            out_pooled.append(pool_taps(taps).numpy())
    m = np.concatenate(out_maps).reshape(n, views, *out_maps[0].shape[1:])
    p = np.concatenate(out_pooled).reshape(n, views, -1)
    return m, np.concatenate([pooled_, p], axis=2)


def _train_rows(data: TuneData, held: int):
    maps, pooled_, ys, ref, groups = [data.wt_maps], [data.wt_pooled], [data.wt_targets], [], []
    ref.append(np.ones(len(data.wt_targets), bool))
    groups.append(np.full(len(data.wt_targets), -1))
    for j, s in enumerate(data.spreads):
        if j == held:
            continue
        rows = np.flatnonzero(s.targets >= 0)
        maps.append(data.maps[j][rows])
        pooled_.append(data.pooled[j][rows])
        ys.append(s.targets[rows])
        ref.append(np.zeros(len(rows), bool))
        groups.append(np.full(len(rows), j))
    cat = np.concatenate
    return cat(maps), cat(pooled_), cat(ys), cat(ref), cat(groups)


def _features(tail, data: TuneData, held: int, known=None):
    """Training features (WT + other spreads' labelled) and the held spread with features;
    ``known``: (WT features, [each spread's]) through ``tail``, when computed before."""
    from napari_chromosome_sort.classification.training.last_blocks import tail_features

    if known is None:
        maps, pooled_, y, ref, groups = _train_rows(data, held)
        X = tail_features(tail, maps, pooled_)
        held_X = tail_features(tail, data.maps[held], data.pooled[held])
    else:
        _, _, y, ref, groups = _train_rows_light(data, held)
        parts = [known[0]]
        for j, s in enumerate(data.spreads):
            if j != held:
                parts.append(known[1][j][s.targets >= 0])
        X, held_X = np.concatenate(parts), known[1][held]
    s = data.spreads[held]
    held_set = SpreadSet(
        s.name,
        held_X,
        s.targets,
        s.n_parts,
        s.box_classes,
        s.box_of,
    )
    return X, y, ref, groups, held_set


def _train_rows_light(data: TuneData, held: int):
    """``_train_rows`` without the maps (targets, reference flags, groups)."""
    ys, ref, groups = [data.wt_targets], [np.ones(len(data.wt_targets), bool)], []
    groups.append(np.full(len(data.wt_targets), -1))
    for j, s in enumerate(data.spreads):
        if j != held:
            rows = np.flatnonzero(s.targets >= 0)
            ys.append(s.targets[rows])
            ref.append(np.zeros(len(rows), bool))
            groups.append(np.full(len(rows), j))
    return None, None, np.concatenate(ys), np.concatenate(ref), np.concatenate(groups)


def _proba(head, spread: SpreadSet) -> np.ndarray:
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba

    return tta_proba(head_logits(head, spread.features[:, :4]))


def loso(
    backbone, split, data: TuneData, epochs: int, lr: float, by_spread: bool, fixed: bool
) -> pd.DataFrame:
    """Per held-out spread: frozen, tuned, and the average of the two (``fixed``: the head
    design of the WT model, else chosen on the training crops)."""
    from napari_chromosome_sort.classification.training.last_blocks import (
        Tail,
        tail_features,
        tune_tail,
    )
    from napari_chromosome_sort.progress import run_to_end

    frozen = Tail(backbone, split)
    known = (
        tail_features(frozen, data.wt_maps, data.wt_pooled),
        [tail_features(frozen, m, p) for m, p in zip(data.maps, data.pooled, strict=True)],
    )
    rows = []
    for held in range(len(data.spreads)):
        X, y, ref, groups, held_frozen = _features(frozen, data, held, known)
        g = groups if by_spread else None
        head_frozen = fit(X, y, ref, fixed=fixed, prior=False, groups=g)
        maps, pooled_, y_t, _, _ = _train_rows(data, held)
        tail = run_to_end(
            tune_tail(Tail(backbone, split), maps, pooled_, y_t, 3, epochs, lr, initial=X)
        )
        X, y, ref, groups, held_tuned = _features(tail, data, held)
        head_tuned = fit(X, y, ref, fixed=fixed, prior=False, groups=groups if by_spread else None)
        p_frozen, p_tuned = _proba(head_frozen, held_frozen), _proba(head_tuned, held_tuned)
        for name, p in (
            ("frozen", p_frozen),
            ("last blocks tuned", p_tuned),
            ("average of both", (p_frozen + p_tuned) / 2),
        ):
            pred = p.argmax(1)
            pred[held_tuned.n_parts >= 2] = CLASSES.index("c")
            rows.append({"recipe": name, **score(held_tuned, pred)})
    return pd.DataFrame(rows)


def wt_crossval(
    backbone, split, data: TuneData, epochs: int, lr: float, fixed: bool, folds: int = 5
) -> dict:
    """WT 5-fold CV (default partition) of the frozen and the tuned model (tuning and head
    inside each training fold): {name: (accuracy, kappa)}."""
    from napari_chromosome_sort.analysis.metrics import evaluate, stratified_splits
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba
    from napari_chromosome_sort.classification.training.last_blocks import (
        Tail,
        tail_features,
        tune_tail,
    )
    from napari_chromosome_sort.progress import run_to_end

    y = data.wt_targets
    frozen = tail_features(Tail(backbone, split), data.wt_maps, data.wt_pooled)
    pred = {"frozen": np.zeros_like(y), "last blocks tuned": np.zeros_like(y)}
    for _, _, tr, te in stratified_splits(y, folds, 1, 0):
        head = fit(frozen[tr], y[tr], None, fixed=fixed)
        pred["frozen"][te] = tta_proba(head_logits(head, frozen[te])).argmax(1)
        tail = run_to_end(
            tune_tail(
                Tail(backbone, split), data.wt_maps[tr], data.wt_pooled[tr], y[tr], 3, epochs, lr
            )
        )
        X = tail_features(tail, data.wt_maps, data.wt_pooled)
        head = fit(X[tr], y[tr], None, fixed=fixed)
        pred["last blocks tuned"][te] = tta_proba(head_logits(head, X[te])).argmax(1)
    out = {}
    for name, p in pred.items():
        report = evaluate(y, p, list(CLASSES))
        out[name] = (round(report["accuracy"], 3), round(report["kappa"], 3))
    return out


def fine_tune_report(
    cache_dir=None, blocks: int = 1, epochs: int = 5, lr: float = 1e-3, wt_cv: bool = False
) -> dict[str, pd.DataFrame]:
    """The tables of docs/validation.md's fine-tuning paragraph (head design of the WT model)."""
    import torch

    torch.set_num_threads(1)  # small products; a busy machine
    backbone, split, data = load(cache_dir, blocks)
    table = loso(backbone, split, data, epochs, lr, by_spread=False, fixed=True)
    out = {
        "Last blocks tuned, leave-one-spread-out: each held-out spread": table,
        "Last blocks tuned pooled, worst spread beside": pooled(table),
    }
    if wt_cv:
        scores = wt_crossval(backbone, split, data, epochs, lr, fixed=True)
        out["WT 5-fold cross-validation"] = pd.DataFrame(
            [{"model": k, "accuracy": a, "kappa": q} for k, (a, q) in scores.items()]
        )
    return out
