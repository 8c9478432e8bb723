"""Own labels: the handling of a held-out spread's calls chosen leave-one-spread-out (nested).

On top of the own-labels model (WT crops moved onto the look of the own crops + the own crops of
the training spreads, class-balanced, no prior correction: its posteriors assume equal priors),
each candidate *handling* turns the posteriors of a spread's kept objects into calls:

- an ensemble with the WT-only model (class-balanced as well): ``(1 - w) p_own + w p_wt``;
- then, optionally, label-free prior adaptation on the spread's own kept objects (MAP-EM of
  Saerens et al. 2002, :func:`..priors.adapt_priors`), starting from and dividing by the uniform
  prior both heads assume, with ``s`` pseudo-counts centred on it (a Dirichlet prior that
  shrinks a small spread's estimate towards equal shares).

The handling is chosen WITHOUT the held-out spread: for held-out spread ``h``, every other
spread ``i`` is held out in turn from the four training spreads, a model is trained on the WT
crops + the three remaining spreads and calls ``i`` under every handling; the handling whose
worst inner spread is called best (mean breaking ties, then no handling:
:func:`napari_chromosome_sort.classification.training.spread_priors.best_candidate`) is kept
and judged on ``h`` with the model trained on all four. The pseudo-counts alone are chosen by
the code ``chromosort train --reference`` runs
(:func:`~napari_chromosome_sort.classification.training.spread_priors.choose_pseudo_counts`).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from napari_chromosome_sort.classification.training.spread_priors import (
    PSEUDO_COUNTS,
    adapted_proba,
    best_candidate,
    choose_pseudo_counts,
)

from .own_labels import CLASSES, OwnLabelsData, SpreadSet, fit, load_data, score, training_set

#: ensemble weights of the WT-only model (0: the own-labels model alone, 1: WT only)
WT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: (WT weight, pseudo-counts) of every handling
HANDLINGS = tuple(itertools.product(WT_WEIGHTS, PSEUDO_COUNTS))
UNHANDLED = (0.0, None)
#: the levers compared, each chosen leave-one-spread-out over its own handlings
LEVERS = {
    "EM on the own model, pseudo-counts chosen": tuple((0.0, s) for s in PSEUDO_COUNTS),
    "ensemble with WT, weight chosen": tuple((w, None) for w in WT_WEIGHTS),
    "ensemble and EM, both chosen": HANDLINGS,
}


def handling_name(handling: tuple) -> str:
    """'WT w=0.25, EM s=10' and the like."""
    w, s = handling
    adapt = "no adaptation" if s is None else f"EM s={s:g}"
    return f"WT w={w:g}, {adapt}"


def proba(head, spread: SpreadSet, views: int = 4) -> np.ndarray:
    """Mean over ``views`` dihedral views of the head's softmax on the spread's kept objects."""
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba

    return tta_proba(head_logits(head, spread.features[:, :views]))


def handled_calls(p_own, p_wt, n_parts, handling: tuple) -> np.ndarray:
    """Class index per kept object under ``handling`` (chromatid pairs called C); ``p_own``,
    ``p_wt``: the two class-balanced models' posteriors (both assume equal priors)."""
    w, s = handling
    p = (1 - w) * p_own + w * p_wt
    p = adapted_proba(p, np.full(p.shape[1], 1.0 / p.shape[1]), s)
    pred = p.argmax(1) if len(p) else np.zeros(0, int)
    pred[n_parts >= 2] = CLASSES.index("c")
    return pred


def own_head(data: OwnLabelsData, excluded: set[int], fixed: bool):
    """The own-labels model (WT moved + own, class-balanced, no prior correction: its posteriors
    assume equal priors) on every spread but ``excluded``."""
    Xs, ys, refs = [data.wt_features], [data.wt_targets], [np.ones(len(data.wt_targets), bool)]
    for j, s in enumerate(data.spreads):
        if j in excluded:
            continue
        rows = np.flatnonzero(s.targets >= 0)
        Xs.append(s.features[rows])
        ys.append(s.targets[rows])
        refs.append(np.zeros(len(rows), bool))
    X, y, ref = np.concatenate(Xs), np.concatenate(ys), np.concatenate(refs)
    return fit(X, y, ref, fixed=fixed, prior=False)


def member_probas(data: OwnLabelsData, fixed: bool = True) -> dict:
    """Posteriors of the kept objects of every spread each model calls in the nested protocol:
    ``{"wt": [per spread], (held, inner): own model without held and inner, on inner,
    (held, None): own model without held, on held}``."""
    X, y, _, _ = training_set(data, -1, True, {})
    wt_head = fit(X, y, None, fixed=fixed, prior=False)
    out: dict = {"wt": [proba(wt_head, s) for s in data.spreads]}
    n = len(data.spreads)
    for held in range(n):
        for inner in (i for i in range(n) if i != held):
            out[held, inner] = proba(own_head(data, {held, inner}, fixed), data.spreads[inner])
        out[held, None] = proba(own_head(data, {held}, fixed), data.spreads[held])
    return out


def _right(spread: SpreadSet):
    """Share of ``spread``'s boxes called right by class indices of its kept objects (chromatid
    pairs called C first)."""

    def right(pred: np.ndarray) -> tuple[float, float]:
        """Called right of all boxes, largest share error (a fraction)."""
        pred = pred.copy()
        pred[spread.n_parts >= 2] = CLASSES.index("c")
        scored = score(spread, pred)
        return scored["right_of_boxes"], scored["share_error_points"] / 100

    return right


def choose(data: OwnLabelsData, probas: dict, held: int, handlings) -> tuple:
    """The handling of ``handlings`` whose worst inner held-out spread (of the four training
    spreads of ``held``) is called best, the mean breaking ties, then no handling; the
    pseudo-counts alone (``LEVERS``' first) by the code of ``chromosort train --reference``."""
    inner = [i for i in range(len(data.spreads)) if i != held]
    if tuple(handlings) == LEVERS["EM on the own model, pseudo-counts chosen"]:
        spreads = [(probas[held, i], _right(data.spreads[i])) for i in inner]
        return 0.0, choose_pseudo_counts(spreads, np.full(len(CLASSES), 1.0 / len(CLASSES)))[0]
    scores = {}
    for i in inner:
        s = data.spreads[i]
        for h in handlings:
            pred = handled_calls(probas[held, i], probas["wt"][i], s.n_parts, h)
            scores.setdefault(h, []).append(score(s, pred)["right_of_boxes"])
    return best_candidate(scores, UNHANDLED)


SHIPPED = "EM as chromosort train records it (pseudo-counts chosen on the labelled crops)"
#: the inner criteria compared (the first is what chromosort train uses)
TRAINED = {
    "worst_right": SHIPPED,
    "worst_share_error": "the same, chosen by the inner spreads' largest share error",
    "mean_right_minus_error": "the same, chosen by the mean of (called right - share error)",
}


def trained_choices(data: OwnLabelsData, held: int, fixed: bool) -> dict:
    """{recipe: handling} ``chromosort train OWN/ --reference WT/`` records, by each inner
    criterion of :data:`TRAINED`, for a model trained on the WT crops + the labelled crops of
    every spread but ``held`` (their spreads in the manifest): each training spread's labelled
    crops held out in turn, a head of the chosen design trained without them
    (:mod:`napari_chromosome_sort.classification.training.spread_priors`)."""
    from napari_chromosome_sort.classification.training import spread_priors as sp
    from napari_chromosome_sort.classification.training import train_head
    from napari_chromosome_sort.classification.training.spread_design import spread_score
    from napari_chromosome_sort.progress import run_to_end

    from .own_labels import _config

    X, y, ref, groups = training_set(data, held, True, None)
    config = _config(fixed, prior=False)
    config.design_by_spread = False  # as chromosort train without --design-by-spread
    _, info = run_to_end(train_head(X, y, list(CLASSES), config, ref, None))
    held_out = run_to_end(sp.held_out_probas(X, y, list(CLASSES), config, ref, groups, info))
    k = len(CLASSES)
    spreads = [(p, lambda pred, t=t: spread_score(t, pred, k)) for p, t in held_out]
    base = sp.assumed_priors(config, y, k)
    out = {}
    for criterion, recipe in TRAINED.items():
        out[recipe] = (0.0, sp.choose_pseudo_counts(spreads, base, criterion=criterion)[0])
    return out


def nested_table(
    data: OwnLabelsData, probas: dict, explore: bool = False, fixed: bool = True
) -> pd.DataFrame:
    """Per held-out spread: the handling ``chromosort train`` records and each lever's handling
    chosen on the other four spreads and its score, the own model alone, the WT-only model and
    the majority class beside; ``explore``: also every handling fixed for all spreads (chosen on
    these spreads, not an estimate)."""
    rows = []
    for held, spread in enumerate(data.spreads):
        picks = list(trained_choices(data, held, fixed).items())
        picks += [(name, choose(data, probas, held, hs)) for name, hs in LEVERS.items()]
        picks += [("own model alone", UNHANDLED), ("WT only, class-balanced", (1.0, None))]
        if explore:
            picks += [(f"all five: {handling_name(h)}", h) for h in HANDLINGS]
        for label, h in picks:
            pred = handled_calls(probas[held, None], probas["wt"][held], spread.n_parts, h)
            rows.append({"recipe": label, "chosen": handling_name(h), **score(spread, pred)})
        _, y, _, _ = training_set(data, held, True, None)
        majority = np.full(len(spread.targets), np.bincount(y).argmax())
        rows.append({"recipe": "majority class", **score(spread, majority)})
    return pd.DataFrame(rows)


def handling_report(cache_dir=None, fixed: bool = True, explore: bool = False) -> dict:
    """The tables of docs/validation.md's own-labels section on handling the calls:
    ``fixed``: every head with the WT model's design (all layers, 256 components, L2 1), else
    each chosen by the inner CV of ``chromosort train``."""
    from .own_labels import pooled

    data = load_data(cache_dir)
    table = nested_table(data, member_probas(data, fixed), explore, fixed)
    table = table.sort_values("recipe", kind="stable", key=lambda c: c.map(_order(table)))
    return {"per_spread": table, "pooled": pooled(table)}


def _order(table: pd.DataFrame) -> dict:
    """Each recipe's first row (the tables keep the order the recipes were run in)."""
    return {name: i for i, name in enumerate(dict.fromkeys(table["recipe"]))}
