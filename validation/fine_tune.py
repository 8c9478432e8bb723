"""Fine-tuning the last backbone blocks, judged by the own-labels protocol.

Each of the five annotated Giemsa DDX11 spreads is held out in turn; the last blocks of the
backbone are tuned (``classification.last_blocks``) on the WT crops + the other four spreads'
crops labelled from their boxes, the head of ``chromosort train --reference`` is fitted on the
tuned features, and the held-out spread is called end to end (``own_labels.calls``/``score``).
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


def load(cache_dir, blocks: int, views: int = 4):
    """The backbone, its split index and the frozen part of every crop."""
    from napari_chromosome_sort.classification.backbones import build_backbone
    from napari_chromosome_sort.classification.config import TrainingConfig
    from napari_chromosome_sort.classification.features import as_rgb_uint8
    from napari_chromosome_sort.classification.last_blocks import frozen_part, split_index
    from napari_chromosome_sort.dataset import scan_image_folder
    from napari_chromosome_sort.label_import import labelled_crops
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
    wt_maps, wt_pooled = part([as_rgb_uint8(p) for p in paths])
    maps, pooled_, spreads = [], [], []
    for spread in giemsa_spreads():
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

    from napari_chromosome_sort.classification.backbones import pool_taps

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
    from napari_chromosome_sort.classification.last_blocks import tail_features

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


def _printed(steps):
    """Relay a progress generator, printing each report."""
    report = None
    try:
        while True:
            report = next(steps)
            print("   ", report.message, flush=True)
            yield report
    except StopIteration as stop:
        return stop.value


def _proba(head, spread: SpreadSet) -> np.ndarray:
    from napari_chromosome_sort.classification.heads import head_logits, tta_proba

    return tta_proba(head_logits(head, spread.features[:, :4]))


def loso(
    backbone, split, data: TuneData, epochs: int, lr: float, by_spread: bool, fixed: bool
) -> pd.DataFrame:
    """Per held-out spread: frozen, tuned, and the average of the two (``fixed``: the head
    design of the WT model, else chosen on the training crops)."""
    import time

    from napari_chromosome_sort.classification.last_blocks import Tail, tail_features, tune_tail
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
        t0 = time.time()
        head_frozen = fit(X, y, ref, fixed=fixed, prior=False, groups=g)
        print(f"{data.spreads[held].name}: frozen head {time.time() - t0:.0f} s", flush=True)
        maps, pooled_, y_t, _, _ = _train_rows(data, held)
        tail = run_to_end(
            _printed(tune_tail(Tail(backbone, split), maps, pooled_, y_t, 3, epochs, lr, initial=X))
        )
        print(f"  tuned {time.time() - t0:.0f} s", flush=True)
        X, y, ref, groups, held_tuned = _features(tail, data, held)
        head_tuned = fit(X, y, ref, fixed=fixed, prior=False, groups=groups if by_spread else None)
        print(f"  tuned head {time.time() - t0:.0f} s", flush=True)
        p_frozen, p_tuned = _proba(head_frozen, held_frozen), _proba(head_tuned, held_tuned)
        for name, p in (
            ("frozen", p_frozen),
            ("last blocks tuned", p_tuned),
            ("average of both", (p_frozen + p_tuned) / 2),
        ):
            pred = p.argmax(1)
            pred[held_tuned.n_parts >= 2] = CLASSES.index("c")
            rows.append({"recipe": name, **score(held_tuned, pred)})
        print(pd.DataFrame(rows[-3:]).to_string(), flush=True)
    return pd.DataFrame(rows)


def wt_crossval(
    backbone, split, data: TuneData, epochs: int, lr: float, fixed: bool, folds: int = 5
) -> dict:
    """WT 5-fold CV (default partition) with tuning + head inside each training fold."""
    from napari_chromosome_sort.analysis.metrics import crossvalidate
    from napari_chromosome_sort.classification.heads import head_logits, tta_proba
    from napari_chromosome_sort.classification.last_blocks import Tail, tail_features, tune_tail
    from napari_chromosome_sort.progress import run_to_end

    y = data.wt_targets

    def fit_predict(tr, te):
        tail = yield from tune_tail(
            Tail(backbone, split), data.wt_maps[tr], data.wt_pooled[tr], y[tr], 3, epochs, lr
        )
        X_tr = tail_features(tail, data.wt_maps[tr], data.wt_pooled[tr])
        head = fit(X_tr, y[tr], None, fixed=fixed)
        X_te = tail_features(tail, data.wt_maps[te], data.wt_pooled[te])
        return tta_proba(head_logits(head, X_te[:, :4])).argmax(1)

    result = run_to_end(crossvalidate(fit_predict, y, list(CLASSES), folds, 1, 0))
    return {"accuracy": result["accuracy"], "kappa": result.get("kappa")}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--by-spread", action="store_true")
    parser.add_argument("--wt-cv", action="store_true")
    parser.add_argument("--no-loso", action="store_true")
    parser.add_argument("--chosen-design", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    backbone, split, data = load(args.cache, args.blocks)
    if not args.no_loso:
        fixed = not args.chosen_design
        table = loso(backbone, split, data, args.epochs, args.lr, args.by_spread, fixed)
        print(table.to_string())
        print(pooled(table).to_string())
    if args.wt_cv:
        print(wt_crossval(backbone, split, data, args.epochs, args.lr, not args.chosen_design))


if __name__ == "__main__":
    main()
