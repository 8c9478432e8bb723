"""Each spread's class mix re-estimated at prediction, chosen leave-one-spread-out at training.

A model trained beside a reference set (:func:`.classifier.train_from_folder`) is class-balanced
without a prior correction: its posteriors assume equal class priors. A spread of a cohesion
mutant may hold mostly one class; label-free MAP-EM prior adaptation on the spread's own kept
objects (:func:`..priors.adapt_priors`, Saerens et al. 2002, with Dirichlet pseudo-counts ``s``
centred on equal priors) calls its unsure objects by the spread's own mix. Whether to adapt, and
with which ``s`` (:data:`PSEUDO_COUNTS`), is chosen when the own crops record the spread they
were cut from (3 or more spreads): each own spread in turn is held out whole, a head of the
chosen design is trained on the reference crops and the other own spreads, the held-out
spread's crops are called under every candidate, and the candidate whose worst held-out spread
is called best (the mean breaking ties, then no adaptation, then fewer pseudo-counts) is kept
(:func:`best_candidate`). The choice is recorded in the model (``prediction_priors``) and
prediction applies it unless told otherwise (:func:`..predict.resolve_priors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Hashable, Sequence

import numpy as np

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.training.spread_design import (
    enough_spreads,
    spread_score,
    spread_splits,
)
from napari_chromosome_sort.progress import Progress, relay

#: Dirichlet pseudo-counts of the per-spread MAP-EM tried (None: no adaptation)
PSEUDO_COUNTS = (None, 1.0, 10.0, 30.0, 100.0)


def adapted_proba(proba: np.ndarray, base, pseudo_counts: float | None) -> np.ndarray:
    """``proba`` (n, k) of one spread re-weighted to its MAP-EM class priors, starting from and
    dividing by ``base`` (the priors the posteriors assume); unchanged for ``None``."""
    from napari_chromosome_sort.classification.priors import adapt_priors

    proba = np.asarray(proba, float)
    if pseudo_counts is None or not len(proba):
        return proba
    return adapt_priors(proba, base, pseudo_counts=pseudo_counts)[0]


#: how candidates are compared over the held-out spreads: {name: (value of one spread from
#: (share called right, largest A/B/C share error), "worst" or "mean" first)}
CRITERIA = {
    "worst_right": (lambda right, error: right, "worst"),
    "worst_share_error": (lambda right, error: -error, "worst"),
    "mean_right_minus_error": (lambda right, error: right - error, "mean"),
}
CRITERION = "worst_right"
#: each criterion in words (the record's ``chosen_by``, shown to the user)
CRITERION_WORDS = {
    "worst_right": "the held-out spread called worst called best",
    "worst_share_error": "the smallest largest type-share error of a held-out spread",
    "mean_right_minus_error": "the best mean of called right minus share error",
}


def best_candidate(scores: dict, default: Hashable, first: str = "worst") -> Hashable:
    """The key of ``scores`` ({candidate: [value per held-out spread], higher better}) whose
    worst held-out spread is best, the mean breaking ties (``first="mean"``: the other way
    round), then ``default``, then the first candidate (the order of ``scores``)."""

    def key(item):
        """(worst, mean, is the default) of one candidate."""
        name, values = item
        worst, mean = min(values), float(np.mean(values))
        return (
            (worst, mean, name == default) if first == "worst" else (mean, worst, name == default)
        )

    return max(scores.items(), key=key)[0]


def choose_pseudo_counts(
    spreads: Sequence[tuple[np.ndarray, Callable[[np.ndarray], tuple[float, float]]]],
    base,
    grid: Sequence = PSEUDO_COUNTS,
    criterion: str = CRITERION,
) -> tuple[float | None, list[dict]]:
    """The pseudo-counts of ``grid`` (None: no adaptation) best by ``criterion``
    (:data:`CRITERIA`; default: the worst spread called best).

    ``spreads``: per held-out spread, the posteriors of its objects from a model that never saw
    it, and a function scoring class indices of its objects: (share called right, largest share
    error); ``base``: the priors the posteriors assume. Returns ``(choice, rows)``, one row per
    candidate."""
    value, first = CRITERIA[criterion]
    scored = {s: [score(adapted_proba(p, base, s).argmax(1)) for p, score in spreads] for s in grid}
    rows = []
    for s, v in scored.items():
        right, error = np.asarray(v, float).T
        rows.append(
            {
                "pseudo_counts": s,
                "worst_right": round(float(right.min()), 4),
                "mean_right": round(float(right.mean()), 4),
                "worst_share_error": round(float(error.max()), 4),
            }
        )
    scores = {s: [value(r, e) for r, e in v] for s, v in scored.items()}
    return best_candidate(scores, None, first), rows


def spread_priors_apply(reference, groups) -> bool:
    """Whether the adaptation is chosen: crops of a reference set beside own crops of at least
    :data:`.spread_design.MIN_SPREADS` spreads."""
    return reference is not None and bool(np.any(reference)) and enough_spreads(groups)


def _fixed_design(config: TrainingConfig, info: dict) -> TrainingConfig:
    """``config`` with the head's chosen design fixed (a single chosen member), so that each
    held-out spread's head is the final head's design fitted without that spread."""
    config = dataclasses.replace(config, design_by_spread=False)
    members = info.get("members") or []
    if len(members) == 1:
        m = members[0]
        config = dataclasses.replace(config, feature_set=m["feature_set"], pca=m["pca"], l2=m["l2"])
    return config


def held_out_probas(
    X: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    config: TrainingConfig,
    reference: np.ndarray,
    groups: np.ndarray,
    info: dict,
) -> Generator[Progress, None, list]:
    """Per own spread: (posteriors of its crops by a head of the chosen design trained on every
    other crop, its labels). ``X`` (n, views, D): features of the chosen preprocessing;
    ``info``: what :func:`.head.train_head` chose; ``reference``: the reference crops;
    ``groups``: each crop's spread, -1 for none."""
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba
    from napari_chromosome_sort.classification.training.head import train_head

    y = np.asarray(y, int)
    fixed = _fixed_design(config, info)
    moved = (info.get("design_by_spread") or {}).get("reference_moved", True)
    views = min(int(config.predict_views), X.shape[1])
    splits = spread_splits(groups)
    out = []
    for i, (tr, te) in enumerate(splits):
        ref = np.asarray(reference, bool)[tr] if moved else None
        head, _ = yield from relay(
            train_head(X[tr], y[tr], classes, fixed, ref, None),
            lambda r, i=i: Progress(i, len(splits), f"spread {i + 1} held out: {r.message}"),
        )
        out.append((tta_proba(head_logits(head, X[te][:, :views])), y[te]))
    return out


def assumed_priors(config: TrainingConfig, y: np.ndarray, k: int) -> np.ndarray:
    """The priors a head trained with ``config`` on labels ``y`` assumes: equal for a
    class-balanced head without the prior correction (the head beside a reference set), else
    the training frequencies."""
    if config.class_balance and not config.prior_correction:
        return np.full(k, 1.0 / k)
    return np.bincount(np.asarray(y, int), minlength=k) / len(y)


def choose_spread_priors(
    X: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    config: TrainingConfig,
    reference: np.ndarray,
    groups: np.ndarray,
    info: dict,
    criterion: str = CRITERION,
) -> Generator[Progress, None, dict]:
    """The ``prediction_priors`` record of a model trained on features ``X`` (see
    :func:`held_out_probas` for the arguments; ``criterion``: :data:`CRITERIA`)."""
    k = len(classes)
    held = yield from held_out_probas(X, y, classes, config, reference, groups, info)
    spreads = [(p, lambda pred, truth=truth: spread_score(truth, pred, k)) for p, truth in held]
    choice, rows = choose_pseudo_counts(spreads, assumed_priors(config, y, k), criterion=criterion)
    yield Progress(len(held), len(held), "class-mix adaptation chosen spread by spread")
    return {
        "adapt": choice is not None,
        "pseudo_counts": choice,
        "chosen_by": (
            f"leave-one-spread-out over {len(held)} spreads, {CRITERION_WORDS[criterion]}"
        ),
        "candidates": rows,
    }


def describe(record: dict | None, how_to_turn_off: bool = True) -> str:
    """One line saying what prediction does with a model's class priors by default
    (``how_to_turn_off``: naming the command line's option that turns it off)."""
    if not record:
        return "prediction keeps the model's class priors (no per-spread adaptation recorded)"
    how = record.get("chosen_by", "")
    if not record.get("adapt"):
        return f"prediction keeps the model's class priors (no adaptation, chosen {how})"
    line = (
        f"prediction re-estimates each spread's class mix (MAP-EM, pseudo-counts "
        f"{float(record['pseudo_counts']):g}; chosen {how})"
    )
    return line + ("; --no-adapt-priors turns it off" if how_to_turn_off else "")
