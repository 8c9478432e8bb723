"""Learning the segmentation model (:mod:`.learned`) from spreads with truth boxes: the settings
choice, the object, split and pair classifiers, and their gains on held-out spreads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation.learned.candidates import Candidates, candidates
from napari_chromosome_sort.segmentation.learned.features import (
    PRIOR_STATUSES,
    SPLIT_FEATURES,
    _typical_area,
    object_features,
    split_features,
)
from napari_chromosome_sort.segmentation.learned.model import SETTING_GRID, SegmentationModel
from napari_chromosome_sort.segmentation.learned.pairs import pair_gain, pair_truth, shows_sisters
from napari_chromosome_sort.segmentation.params import SegmentationParams
from napari_chromosome_sort.segmentation.result import Segmentation
from napari_chromosome_sort.segmentation.truth import matched_objects

#: Share of the training boxes a setting must gain to leave its default (:func:`choose_settings`).
SETTINGS_MARGIN = 0.03
#: A split classifier is learned only from at least this many right splits (else no splitting)
#: ...
MIN_SPLIT_EXAMPLES = 2
#: ... and only when its splits gain at least this many boxes on training spreads (folds) it did
#: not learn from (:func:`split_gain`).
SPLIT_MARGIN = 2
#: A pair classifier is learned only from at least this many right pairs (two parts that are
#: one chromosome), and only when regrouping with it gains at least :func:`settings_margin`
#: boxes on training spreads (folds) it did not learn from (:func:`.pairs.pair_gain`).
MIN_PAIR_EXAMPLES = 2


@dataclass
class TrainingSpread:
    """One annotated spread: its name, image and truth chromosome boxes (n, 4: y0, x0, y1, x1)."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def _grid_points(grid: dict[str, list[float]]) -> list[dict]:
    import itertools

    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _found(seg: Segmentation, boxes: np.ndarray) -> int:
    """Truth boxes matched by a kept object."""
    kept = seg.objects[seg.objects["status"] == "chromosome"]
    return int(matched_objects(boxes, kept).sum())


Segmenter = Callable[[TrainingSpread, SegmentationParams], Candidates]


def _segment(spread: TrainingSpread, params: SegmentationParams) -> Candidates:
    return candidates(spread.image, params)


def choose_settings(
    spreads: Sequence[TrainingSpread],
    base: SegmentationParams,
    grid: dict[str, list[float]],
    progress: Callable[[str], None] | None = None,
    segment: Segmenter = _segment,
) -> tuple[dict, list[Candidates]]:
    """(settings, their candidates on each spread): the grid point whose segmentation finds the
    most truth boxes on ``spreads`` (ties: the fewest settings changed from ``base``, then the
    first point). The base values stay unless the best point finds at least
    :func:`settings_margin` more boxes than they do: one spread's difference of a box or two
    is chance, not a property of the lab's spreads. From several spreads the gain must also
    hold on spreads the choice was not made on: each spread judged with the point chosen (by
    the same rule) on the others must find, together, that margin more than the base values."""
    scored = []
    for point in _grid_points(grid):
        found = [segment(s, replace(base, **point)) for s in spreads]
        per_spread = np.array([_found(c.seg, s.boxes) for c, s in zip(found, spreads, strict=True)])
        changed = sum(getattr(base, k) != v for k, v in point.items())
        if progress:
            progress(f"settings {point}: {int(per_spread.sum())} boxes found")
        scored.append((changed, point, found, per_spread))
    sizes = np.array([len(s.boxes) for s in spreads])
    at_base = next((i for i, t in enumerate(scored) if t[0] == 0), None)

    def pick(use: np.ndarray) -> int:
        """The point chosen on the spreads ``use`` (index into ``scored``)."""
        best = int(np.argmax([t[3][use].sum() - 0.1 * t[0] for t in scored]))  # first of equals
        margin = settings_margin(int(sizes[use].sum()))
        if at_base is not None and scored[best][3][use].sum() < (
            scored[at_base][3][use].sum() + margin
        ):
            return at_base
        return best

    everyone = np.ones(len(spreads), bool)
    chosen = pick(everyone)
    if at_base is not None and chosen != at_base and len(spreads) > 1:
        held_out = [pick(everyone & (np.arange(len(spreads)) != i)) for i in range(len(spreads))]
        gain = sum(scored[j][3][i] - scored[at_base][3][i] for i, j in enumerate(held_out))
        if gain < settings_margin(int(sizes.sum())):
            chosen = at_base
    return scored[chosen][1], scored[chosen][2]


def settings_margin(n_boxes: int) -> int:
    """Boxes a setting must gain over the base values to be taken: 2, or 3 % of the boxes."""
    return max(2, int(np.ceil(SETTINGS_MARGIN * n_boxes)))


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coef, intercept) of a standardised L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    if y.all() or not y.any():  # one kind of object only: keep (or reject) every candidate
        return mean, scale, np.zeros(x.shape[1]), 4.0 if y.all() else -4.0
    fit = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    return mean, scale, fit.coef_[0], float(fit.intercept_[0])


def _split_examples(c: Candidates, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(split features, truth boxes the pieces match less those the whole object matches) of
    one spread's proposed splits: a split is right when it gains."""
    objects = c.seg.objects.set_index("label", drop=False)
    whole_hit = pd.Series(matched_objects(boxes, c.seg.objects), index=objects.index)
    typical = _typical_area(c.seg.objects)
    x = [split_features(objects.loc[o.label], o.objects, typical) for o in c.splits]
    gain = [
        int(matched_objects(boxes, o.objects).sum()) - int(whole_hit[o.label]) for o in c.splits
    ]
    return np.asarray(x, float).reshape(-1, len(SPLIT_FEATURES)), np.asarray(gain, int)


def split_gain(x: np.ndarray, gain: np.ndarray, spread: np.ndarray) -> int:
    """Truth boxes gained on the training spreads by the splits a split classifier takes, each
    spread's splits decided by a classifier learned from the other spreads' (one spread: each
    of :data:`CHECK_FOLDS` folds of its splits from the others); a fold whose others hold
    fewer than :data:`MIN_SPLIT_EXAMPLES` right splits takes none."""
    right = gain > 0
    if len(np.unique(spread)) > 1:
        folds = spread
    else:
        folds = np.empty(len(gain), int)
        for kind in (False, True):
            folds[right == kind] = np.arange((right == kind).sum()) % CHECK_FOLDS
    total = 0
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        if right[train].sum() < MIN_SPLIT_EXAMPLES:
            continue
        mean, scale, coef, intercept = _fit(x[train], right[train])
        p = 1.0 / (1.0 + np.exp(-(((x[test] - mean) / scale) @ coef + intercept)))
        total += int(gain[test][p >= 0.5].sum())
    return total


#: Folds over the objects when the classifier is checked on a single training spread.
CHECK_FOLDS = 5


def _score(kept: np.ndarray, y: np.ndarray) -> int:
    """Right decisions counted against wrong ones: kept chromosomes minus kept other objects."""
    return int((kept & y).sum() - (kept & ~y).sum())


def classifier_gain(
    x: np.ndarray, y: np.ndarray, status: np.ndarray, spread: np.ndarray, threshold: float
) -> int:
    """How much better than the rules an object classifier decides on the training objects
    (features ``x``, truth ``y``, the rules' ``status``, spread index ``spread``): chromosomes
    kept minus other objects kept, with each spread decided by a classifier learned from the
    other spreads (one spread: each of :data:`CHECK_FOLDS` folds of its objects from the
    others), less the same for the rules. Objects of a status the other spreads lack keep the
    rules' decision, as in :func:`apply_model`."""
    if len(np.unique(spread)) > 1:
        folds = spread
    else:  # one spread: folds of its objects, each kind spread evenly over them
        folds = np.empty(len(y), int)
        for kind in (False, True):
            folds[y == kind] = np.arange((y == kind).sum()) % CHECK_FOLDS
    rules = status == "chromosome"
    kept = rules.copy()
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        if not train.any():
            continue
        mean, scale, coef, intercept = _fit(x[train], y[train])
        p = 1.0 / (1.0 + np.exp(-(((x[test] - mean) / scale) @ coef + intercept)))
        judged = np.isin(status[test], np.unique(status[train]))
        kept[test] = np.where(judged, p >= threshold, rules[test])
    return _score(kept, y) - _score(rules, y)


def learn_segmentation(
    spreads: Sequence[TrainingSpread],
    base: SegmentationParams | None = None,
    grid: dict[str, list[float]] | None = None,
    threshold: float = 0.5,
    progress: Callable[[str], None] | None = None,
    segment: Segmenter = _segment,
) -> SegmentationModel:
    """Learn settings, an object classifier and a split classifier from annotated spreads
    (module docstring); ``segment`` may be a cached :func:`candidates` (the validation's)."""
    if not spreads:
        raise ChromosortError("no annotated spreads to learn from")
    base = base or SegmentationParams()
    settings, found = choose_settings(spreads, base, grid or SETTING_GRID, progress, segment)
    x = np.vstack([object_features(c.seg.objects) for c in found])
    y = np.concatenate(
        [matched_objects(s.boxes, c.seg.objects) for c, s in zip(found, spreads, strict=True)]
    )
    if not y.any():
        raise ChromosortError(
            "no candidate object matches a truth box (IoU >= 0.5): check that the truth belongs "
            "to these images"
        )
    mean, scale, coef, intercept = _fit(x, y)
    status = np.concatenate([c.seg.objects["status"].astype(str).to_numpy() for c in found])
    spread = np.concatenate([np.full(len(c.seg.objects), i) for i, c in enumerate(found)])
    gain = classifier_gain(x, y, status, spread, threshold)
    margin = settings_margin(sum(len(s.boxes) for s in spreads))
    split_parts = [_split_examples(c, s.boxes) for c, s in zip(found, spreads, strict=True)]
    xs = np.vstack([p[0] for p in split_parts])
    gains = np.concatenate([p[1] for p in split_parts])
    ys = gains > 0
    split_spread = np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(split_parts)])
    split: tuple = ((), (), (), 0.0)
    checked = split_gain(xs, gains, split_spread) if ys.sum() >= MIN_SPLIT_EXAMPLES else 0
    if checked >= SPLIT_MARGIN:  # the corrections show touching chromosomes to split
        split = _fit(xs, ys)
    pair, pair_counts, sisters = _learn_pairs(found, spreads, margin)
    return SegmentationModel(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in coef),
        intercept=float(intercept),
        threshold=float(threshold),
        settings={k: float(v) for k, v in settings.items()},
        split_mean=tuple(float(v) for v in split[0]),
        split_scale=tuple(float(v) for v in split[1]),
        split_coef=tuple(float(v) for v in split[2]),
        split_intercept=float(split[3]),
        spreads=tuple(s.name for s in spreads),
        statuses=tuple(s for s in PRIOR_STATUSES if s in set(status)),
        classify=bool(gain >= margin),
        examples={
            "chromosome": int(y.sum()),
            "other": int((~y).sum()),
            "splits_right": int(ys.sum()),
            "splits_wrong": int((~ys).sum()),
            "classifier_gain": gain,
            "split_gain": checked,
            **pair_counts,
        },
        pair_mean=tuple(float(v) for v in pair[0]),
        pair_scale=tuple(float(v) for v in pair[1]),
        pair_coef=tuple(float(v) for v in pair[2]),
        pair_intercept=float(pair[3]),
        pair_sisters=sisters,
    )


def _predictor(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The probabilities of the logistic regression :func:`_fit` learns from ``x``, ``y``."""
    mean, scale, coef, intercept = _fit(x, y)
    return lambda z: 1.0 / (1.0 + np.exp(-(((z - mean) / scale) @ coef + intercept)))


def _learn_pairs(
    found: Sequence[Candidates], spreads: Sequence[TrainingSpread], margin: int
) -> tuple[tuple, dict, bool]:
    """(pair classifier as (mean, scale, coef, intercept), or empty; example counts and its
    held-out gain; the kind of spread it regroups). It learns from the training spreads of one
    kind: those showing separated sister chromatids if at least half of them do, else the
    others (:mod:`.pairs`); only when they show at least :data:`MIN_PAIR_EXAMPLES`
    right pairs and regrouping gains ``margin`` boxes on spreads (folds) it did not learn from."""
    none = ((), (), (), 0.0)
    if any(c.pairs is None for c in found):
        return none, {}, True
    sisters = 2 * sum(shows_sisters(c.pairs) for c in found) >= len(found)
    kind = [(c.pairs, s.boxes) for c, s in zip(found, spreads, strict=True)]
    kind = [(o, b) for o, b in kind if shows_sisters(o) == sisters]
    options, boxes = [o for o, _ in kind], [b for _, b in kind]
    y = np.concatenate([pair_truth(o, b) for o, b in kind])
    counts = {"pairs_right": int(y.sum()), "pairs_wrong": int((~y).sum()), "pair_gain": 0}
    if y.sum() < MIN_PAIR_EXAMPLES or y.all():
        return none, counts, sisters
    counts["pair_gain"] = pair_gain(options, boxes, _predictor, MIN_PAIR_EXAMPLES, sisters)
    if counts["pair_gain"] < margin:
        return none, counts, sisters
    x = np.vstack([o.features() for o in options])
    return _fit(x, y), counts, sisters
