"""A segmentation model of the user's lab, learned from corrected spreads.

Four things are learned from spreads with truth boxes (:mod:`.truth`):

1. **Settings**: the object threshold, the grow-back level and how wide paired sister chromatids
   may be (``peak_fraction``, ``grow_fraction``, ``pair_max_width_ratio`` of
   :class:`.SegmentationParams`) chosen from :data:`SETTING_GRID` by the truth boxes found on the
   training spreads (ties go to the shipped defaults; from several spreads the gain must hold on
   spreads the choice was not made on).
2. **An object classifier**: a standardised logistic regression over the candidate objects of the
   segmentation with those settings. Its features (:data:`FEATURES`) are the shape and intensity
   measures of the objects table made relative to the spread (area and intensity over the
   spread's median chromosome), so that they carry over to other spreads, and the status the
   rules gave. Target: the object's box matches a truth box at IoU >= 0.5 (one-to-one). It
   judges only objects of the statuses the rules gave on the training spreads
   (``SegmentationModel.statuses``): an object of a status it never saw (debris, say, when the
   training spreads had none) keeps the rules' status, since nothing in the training shows when
   the rules are wrong about it. The classifier decides at all only when it does clearly better
   than the rules on the training spreads, each spread judged by a classifier learned from the
   others (:func:`classifier_gain`); otherwise the rules decide and the model only splits.
3. **Splits of touching chromosomes**: the rules only try to split objects larger than
   ``cluster_area_factor`` x the median; two chromosomes touching end to end or side by side are
   often smaller. Every kept object of at least :data:`SPLIT_MIN_AREA` x the median that the
   watershed of :mod:`.splitting` cuts into chromosome-sized pieces offers that split
   (:func:`propose_splits`). A second logistic regression (:data:`SPLIT_FEATURES`: the whole
   object's size and solidity, its pieces' solidity, balance and number) learns whether the
   pieces match more truth boxes than the whole. It is learned only when the training spreads
   hold at least :data:`MIN_SPLIT_EXAMPLES` such right splits and its splits gain at least
   :data:`SPLIT_MARGIN` boxes on training spreads it did not learn from (:func:`split_gain`);
   otherwise the model never splits.
   A split is taken when its probability is >= 0.5 and every piece passes the object classifier.
4. **Which neighbouring parts are one chromosome** (:mod:`.learned_pairs`): a third logistic
   regression over pairs of parts of kept objects (sister chromatids the rules paired, or did
   not), learned from the spreads of one kind (with separated sister chromatids, or without)
   and used only on spreads of that kind, only when regrouping with it gains at least
   :func:`settings_margin` boxes on training spreads (folds) it did not learn from.

Settings move away from the defaults, and the classifier replaces the rules' decision, only for a
clear gain on the training spreads (:func:`choose_settings`, :func:`classifier_gain`).

Applied, objects with probability >= the model's threshold become ``chromosome`` (reason
``learned: p=0.93``); the others keep their status, or, if the rules had kept them, become
``debris`` (smaller than the typical chromosome) or ``cluster``.
:func:`least_sure_first` orders a segmentation's objects by the model's uncertainty, for review,
and :func:`compare_with_rules` lists what the model changed against the rules alone.

A spread the user reviewed (kept, rejected, painted objects) is training data as it stands
(:func:`reviewed_spread`, the same truth as a corrected ``chromosort segment`` folder given to
``--truth``); a :class:`LearningSession` gathers such spreads and learns from all of them.

The model file is JSON (no pickle): the format, feature names, numbers, settings and the names of
the spreads it learned from. Reading checks all of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_bytes_atomic
from ..errors import ChromosortError
from ..progress import Progress
from .learned_pairs import (
    PAIR_FEATURES,
    PairOptions,
    pair_gain,
    pair_truth,
    propose_pairs,
    regroup,
    regrouped_objects,
    restrict,
    shows_sisters,
)
from .params import OBJECT_COLUMNS, SegmentationParams
from .pipeline import segment_spread
from .result import Segmentation
from .splitting import split_by_levels
from .truth import BOX_COLUMNS, box_iou, greedy_match, matched_objects, reviewed_boxes

MODEL_FORMAT = "chromosort-segmentation-model/4"
#: /1: without splits; /1 and /2: without ``statuses`` (they judge every object); /1 to /3:
#: without the pair classifier (they never regroup parts)
READ_FORMATS = (
    "chromosort-segmentation-model/1",
    "chromosort-segmentation-model/2",
    "chromosort-segmentation-model/3",
    MODEL_FORMAT,
)
PRIOR_STATUSES = ("chromosome", "debris", "cluster", "nucleus", "border")
FEATURES = (
    "log_rel_area",
    "eccentricity",
    "solidity",
    "rel_major_axis",
    "rel_minor_axis",
    "log_rel_intensity",
    "several_parts",
) + tuple(f"was_{status}" for status in PRIOR_STATUSES)
#: Measures of a proposed split (whole object, its pieces) for the split classifier.
SPLIT_FEATURES = (
    "log_rel_area",
    "whole_solidity",
    "min_piece_solidity",
    "piece_area_ratio",
    "n_pieces",
)
#: The settings a model may re-estimate, with the values it chooses from (defaults among them):
#: how bright an object is (its threshold), how far its outline reaches, and how wide the two
#: blobs of a chromosome with separated sister chromatids may be before they count as two.
SETTING_GRID: dict[str, list[float]] = {
    "peak_fraction": [0.4, 0.5],
    "grow_fraction": [0.15, 0.2, 0.3],
    "pair_max_width_ratio": [0.7, 0.85],
}
#: Kept objects at least this x the spread's median chromosome offer a split as candidates: two
#: touching chromosomes are together at least as large as a typical one.
SPLIT_MIN_AREA = 1.0
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
#: boxes on training spreads (folds) it did not learn from (:func:`.learned_pairs.pair_gain`).
MIN_PAIR_EXAMPLES = 2
_P_IN_REASON = re.compile(r"learned: p=([0-9.]+)")
_SPLIT_REASON = re.compile(r"split from a touching group \((\d+) pieces\)")
#: The objects-table column that holds the model's probability of each object, for review.
P_COLUMN = "model_p"


@dataclass
class TrainingSpread:
    """One annotated spread: its name, image and truth chromosome boxes (n, 4: y0, x0, y1, x1)."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


@dataclass
class SplitOption:
    """A kept object cut into chromosome-sized pieces: the object's label, its window in the
    label image, the pieces' labels in that window (1..k, 0 outside) and their objects rows."""

    label: int
    window: tuple[slice, slice]
    pieces: np.ndarray
    objects: pd.DataFrame


@dataclass
class Candidates:
    """A segmentation by the rules and the splits it offers (:func:`propose_splits`)."""

    seg: Segmentation
    splits: list[SplitOption] = field(default_factory=list)
    pairs: PairOptions | None = None


def _typical(values: pd.Series, kept: pd.Series) -> float:
    """The median over the kept objects (all objects when none is kept), at least a tiny bit."""
    pool = values[kept] if kept.any() else values
    return max(float(np.median(pool)), 1e-6) if len(pool) else 1.0


def object_features(objects: pd.DataFrame, spread: pd.DataFrame | None = None) -> np.ndarray:
    """The (n, len(FEATURES)) features of an objects table, relative to its spread (the objects
    table ``spread``, by default ``objects`` itself)."""
    if len(objects) == 0:
        return np.zeros((0, len(FEATURES)))
    spread = objects if spread is None else spread
    kept = spread["status"] == "chromosome"

    def rel(column: str) -> pd.Series:
        """``column`` of the objects relative to its typical value in the spread."""
        return objects[column] / _typical(spread[column], kept)

    columns = [
        np.log(rel("area")),
        objects["eccentricity"],
        objects["solidity"],
        rel("major_axis"),
        rel("minor_axis"),
        np.log(np.clip(rel("mean_intensity"), 1e-3, None)),
        objects["n_parts"] > 1,
    ] + [objects["status"] == status for status in PRIOR_STATUSES]
    return np.column_stack([np.asarray(c, float) for c in columns])


@dataclass(frozen=True)
class SegmentationModel:
    """A learned object classifier plus the settings it chose (see the module docstring)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    settings: dict = field(default_factory=dict)
    # the split classifier (SPLIT_FEATURES); empty when the training spreads showed no split
    split_mean: tuple[float, ...] = ()
    split_scale: tuple[float, ...] = ()
    split_coef: tuple[float, ...] = ()
    split_intercept: float = 0.0
    spreads: tuple[str, ...] = ()
    examples: dict = field(default_factory=dict)  # {"chromosome": n, "other": m, ...}
    features: tuple[str, ...] = FEATURES
    # the rules' statuses the model judges: those of its training objects
    statuses: tuple[str, ...] = PRIOR_STATUSES
    # whether the object classifier decides at all (else the rules do: it gained nothing)
    classify: bool = True
    # the pair classifier (PAIR_FEATURES); empty when it gained nothing on the training spreads
    pair_mean: tuple[float, ...] = ()
    pair_scale: tuple[float, ...] = ()
    pair_coef: tuple[float, ...] = ()
    pair_intercept: float = 0.0
    pair_features: tuple[str, ...] = PAIR_FEATURES
    # the kind of spread the pair classifier regroups: with separated sister chromatids or not
    pair_sisters: bool = True

    def __post_init__(self):
        _check_model(self)

    def probabilities(
        self, objects: pd.DataFrame, spread: pd.DataFrame | None = None
    ) -> np.ndarray:
        """P(one annotated chromosome) of each row of an objects table (relative to ``spread``,
        by default the table itself)."""
        x = object_features(objects, spread)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    @property
    def splits(self) -> bool:
        """Whether the model splits touching chromosomes."""
        return len(self.split_coef) > 0

    def split_probability(self, whole: pd.Series, pieces: pd.DataFrame, typical_area) -> float:
        """P(the pieces match more truth chromosomes than the whole object)."""
        x = split_features(whole, pieces, typical_area)
        z = (x - np.asarray(self.split_mean)) / np.asarray(self.split_scale)
        logit = z @ np.asarray(self.split_coef) + self.split_intercept
        return float(1.0 / (1.0 + np.exp(-logit)))

    @property
    def pairs(self) -> bool:
        """Whether the model decides which neighbouring parts are one chromosome."""
        return len(self.pair_coef) > 0

    def pair_probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(two parts are one chromosome) of pair features ``x`` (:data:`PAIR_FEATURES`)."""
        z = (x - np.asarray(self.pair_mean)) / np.asarray(self.pair_scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.pair_coef) + self.pair_intercept)))

    def params(self, base: SegmentationParams | None = None) -> SegmentationParams:
        """``base`` (default: the shipped defaults) with the learned settings."""
        return replace(base or SegmentationParams(), **self.settings)

    def to_json(self) -> str:
        """The model as JSON, tagged with its format."""
        return json.dumps({"format": MODEL_FORMAT, **asdict(self)}, indent=1)

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON to ``path``; returns the path."""
        return write_bytes_atomic(path, self.to_json().encode())

    @classmethod
    def from_dict(cls, data) -> SegmentationModel:
        """The model of a dict read from its JSON (an error if it is not one, or of a format
        this version does not read)."""
        kind = data.get("format") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind.startswith(MODEL_FORMAT.split("/")[0] + "/"):
            if kind not in READ_FORMATS:
                raise ChromosortError(
                    f"segmentation model of format {kind!r}; this version reads "
                    f"{MODEL_FORMAT!r}: learn the model again with 'chromosort segment-learn'"
                )
        elif kind != MODEL_FORMAT:
            raise ChromosortError(f"not a segmentation model (expected format {MODEL_FORMAT!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            for key in ("mean", "scale", "coef", "features", "spreads"):
                fields[key] = tuple(fields[key])
            fields["statuses"] = tuple(fields.get("statuses", PRIOR_STATUSES))
            for key in ("split_mean", "split_scale", "split_coef", "pair_mean", "pair_scale"):
                fields[key] = tuple(fields.get(key, ()))
            fields["pair_coef"] = tuple(fields.get("pair_coef", ()))
            fields["pair_features"] = tuple(fields.get("pair_features", PAIR_FEATURES))
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ChromosortError(f"segmentation model is incomplete or malformed: {exc}") from None


def _check_model(model: SegmentationModel) -> None:
    """Raise a ``ChromosortError`` naming what is wrong with a model's contents."""
    if tuple(model.features) != FEATURES:
        raise ChromosortError(
            f"segmentation model expects features {list(model.features)}, this version "
            f"computes {list(FEATURES)}"
        )
    n = len(FEATURES)
    for name in ("mean", "scale", "coef"):
        values = getattr(model, name)
        if len(values) != n or not all(isinstance(v, int | float) for v in values):
            raise ChromosortError(f"segmentation model: '{name}' must be {n} numbers")
    if not np.all(np.isfinite(model.mean + model.coef)) or min(model.scale) <= 0:
        raise ChromosortError("segmentation model: non-finite numbers or a scale <= 0")
    if not isinstance(model.intercept, int | float) or not np.isfinite(model.intercept):
        raise ChromosortError("segmentation model: 'intercept' must be a finite number")
    if not isinstance(model.threshold, int | float) or not 0 < model.threshold < 1:
        raise ChromosortError("segmentation model: 'threshold' must be between 0 and 1")
    if not isinstance(model.settings, dict) or not set(model.settings) <= set(SETTING_GRID):
        raise ChromosortError(
            f"segmentation model: 'settings' may only hold {sorted(SETTING_GRID)}"
        )
    if not all(isinstance(v, int | float) and 0 <= v <= 1 for v in model.settings.values()):
        raise ChromosortError("segmentation model: each setting must be a number in [0, 1]")
    m = len(SPLIT_FEATURES)
    for name in ("split_mean", "split_scale", "split_coef"):
        values = getattr(model, name)
        if len(values) not in (0, m) or not all(isinstance(v, int | float) for v in values):
            raise ChromosortError(f"segmentation model: '{name}' must be none or {m} numbers")
    if not len(model.split_mean) == len(model.split_scale) == len(model.split_coef):
        raise ChromosortError("segmentation model: the split classifier is incomplete")
    split_numbers = model.split_mean + model.split_coef + (model.split_intercept,)
    if not all(isinstance(v, int | float) for v in split_numbers) or not np.all(
        np.isfinite(split_numbers)
    ):
        raise ChromosortError("segmentation model: the split classifier has non-finite numbers")
    if model.split_scale and min(model.split_scale) <= 0:
        raise ChromosortError("segmentation model: a split scale <= 0")
    _check_pairs(model)
    if not isinstance(model.classify, bool):
        raise ChromosortError("segmentation model: 'classify' must be true or false")
    if not set(model.statuses) <= set(PRIOR_STATUSES):
        raise ChromosortError(
            f"segmentation model: 'statuses' may only hold {list(PRIOR_STATUSES)}"
        )


def _check_pairs(model: SegmentationModel) -> None:
    """Raise a ``ChromosortError`` naming what is wrong with a model's pair classifier."""
    if not isinstance(model.pair_sisters, bool):
        raise ChromosortError("segmentation model: 'pair_sisters' must be true or false")
    if not model.pairs and not model.pair_mean and not model.pair_scale:
        return
    if tuple(model.pair_features) != PAIR_FEATURES:
        raise ChromosortError(
            f"segmentation model expects pair features {list(model.pair_features)}, this "
            f"version computes {list(PAIR_FEATURES)}"
        )
    m = len(PAIR_FEATURES)
    numbers = (*model.pair_mean, *model.pair_scale, *model.pair_coef, model.pair_intercept)
    if not (len(model.pair_mean) == len(model.pair_scale) == len(model.pair_coef) == m):
        raise ChromosortError(f"segmentation model: the pair classifier must hold {m} numbers each")
    if not all(isinstance(v, int | float) for v in numbers) or not np.all(np.isfinite(numbers)):
        raise ChromosortError("segmentation model: the pair classifier has non-finite numbers")
    if min(model.pair_scale) <= 0:
        raise ChromosortError("segmentation model: a pair scale <= 0")


def load_segmentation_model(path: str | Path) -> SegmentationModel:
    """The model of a JSON file written by :meth:`SegmentationModel.save`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChromosortError(f"cannot read segmentation model {path}: {exc}") from None
    return SegmentationModel.from_dict(data)


# --- candidates ------------------------------------------------------------------------------


def _measure_pieces(pieces: np.ndarray, window, signal: np.ndarray) -> pd.DataFrame:
    """Objects rows (label = piece id) of the pieces of one window, as kept single pieces."""
    from skimage.measure import regionprops

    oy, ox = window[0].start, window[1].start
    rows = []
    for r in regionprops(pieces, intensity_image=signal[window]):
        y0, x0, y1, x1 = r.bbox
        rows.append(
            {
                "label": int(r.label),
                "status": "chromosome",
                "reason": "",
                "area": int(r.area),
                "bbox_y0": y0 + oy,
                "bbox_x0": x0 + ox,
                "bbox_y1": y1 + oy,
                "bbox_x1": x1 + ox,
                "centroid_y": r.centroid[0] + oy,
                "centroid_x": r.centroid[1] + ox,
                "eccentricity": float(r.eccentricity),
                "solidity": float(r.solidity),
                "major_axis": float(r.axis_major_length),
                "minor_axis": float(r.axis_minor_length),
                "orientation": float(r.orientation),
                "mean_intensity": float(r.intensity_mean),
                "n_parts": 1,
            }
        )
    return pd.DataFrame(rows, columns=OBJECT_COLUMNS)


def split_features(whole: pd.Series, pieces: pd.DataFrame, typical_area: float) -> np.ndarray:
    """The :data:`SPLIT_FEATURES` of a split: the whole object's size (over the spread's
    ``typical_area``) and solidity, the pieces' least solidity, smallest over largest area and
    number."""
    areas = pieces["area"].to_numpy(float)
    return np.array(
        [
            np.log(whole["area"] / typical_area),
            whole["solidity"],
            pieces["solidity"].min(),
            areas.min() / areas.max(),
            len(pieces),
        ],
        float,
    )


def propose_splits(seg: Segmentation, min_area: float = SPLIT_MIN_AREA) -> list[SplitOption]:
    """The splits the watershed of :func:`.split_by_levels` offers for the kept objects of at
    least ``min_area`` x the median kept object (every piece chromosome-sized); needs the
    segmentation's signal."""
    from scipy import ndimage as ndi

    objects = seg.objects
    if seg.signal is None or len(objects) == 0:
        return []
    kept = objects["status"] == "chromosome"
    typical = _typical(objects["area"], kept)
    params = replace(seg.params, split_partial=False)
    width = seg.stats.get("width")
    windows = ndi.find_objects(seg.labels)
    options = []
    for label in objects.loc[kept & (objects["area"] >= min_area * typical), "label"]:
        window = windows[int(label) - 1]
        local = seg.labels[window] == label
        split = split_by_levels(local, seg.signal[window], typical, params, width)
        if split is None:
            continue
        pieces = np.where(local, split[0], 0).astype(np.int32)
        if len(np.unique(pieces[pieces > 0])) < 2:
            continue
        table = _measure_pieces(pieces, window, seg.signal)
        options.append(SplitOption(int(label), window, pieces, table))
    return options


def candidates(image: np.ndarray, params: SegmentationParams) -> Candidates:
    """The rules' segmentation of ``image`` and the splits it offers."""
    seg = segment_spread(image, params)
    return Candidates(seg, propose_splits(seg), propose_pairs(seg))


# --- learning --------------------------------------------------------------------------------


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


def _typical_area(objects: pd.DataFrame) -> float:
    return _typical(objects["area"], objects["status"] == "chromosome")


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
    others (:mod:`.learned_pairs`); only when they show at least :data:`MIN_PAIR_EXAMPLES`
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


# --- applying --------------------------------------------------------------------------------


def _chosen_splits(c: Candidates, model: SegmentationModel) -> list[tuple]:
    """(option, piece probabilities) of the splits the model takes (module docstring)."""
    if not model.splits or not c.splits:
        return []
    objects = c.seg.objects.set_index("label", drop=False)
    typical = _typical_area(c.seg.objects)
    chosen = []
    for option in c.splits:
        p_split = model.split_probability(objects.loc[option.label], option.objects, typical)
        if p_split < 0.5:
            continue
        p_pieces = model.probabilities(option.objects, c.seg.objects)
        if p_pieces.min() >= model.threshold:
            chosen.append((option, p_pieces))
    return chosen


def apply_model(seg: Segmentation | Candidates, model: SegmentationModel) -> Segmentation:
    """The segmentation with statuses, reasons and splits set by the model (module docstring);
    a bare ``Segmentation`` needs its signal to offer splits."""
    c = seg if isinstance(seg, Candidates) else Candidates(seg, propose_splits(seg))
    objects = c.seg.objects.copy()
    if len(objects) == 0:
        return c.seg
    p = model.probabilities(objects)
    prior = objects["status"].astype(str).to_numpy()
    judged = np.isin(prior, model.statuses) & model.classify
    was_kept = prior == "chromosome"
    keep = np.where(judged, p >= model.threshold, was_kept)
    small = (
        objects["area"] < _typical(objects["area"], objects["status"] == "chromosome")
    ).to_numpy()
    rejected = np.where(small, "debris", "cluster")
    status = np.where(keep, "chromosome", np.where(was_kept, rejected, prior))
    reason = [
        (f"learned: p={pi:.2f}" if k else f"{r}; learned: p={pi:.2f}")
        if j
        else f"{r}; learned: p={pi:.2f}, not judged ({_not_judged(model, s)})"
        for pi, k, j, s, r in zip(
            p, keep, judged, prior, objects["reason"].astype(str), strict=True
        )
    ]
    objects["status"] = status
    objects["reason"] = reason
    chosen = _chosen_splits(c, model)
    if not chosen:
        return _apply_pairs(replace(c.seg, objects=objects), c, model)
    labels = c.seg.labels.copy()
    next_label = int(labels.max()) + 1
    added = []
    for option, p_pieces in chosen:
        rows = option.objects.copy()
        new = np.arange(next_label, next_label + len(rows))
        lookup = np.zeros(int(option.pieces.max()) + 1, np.int32)
        lookup[rows["label"].to_numpy()] = new
        window = labels[option.window]
        window[option.pieces > 0] = lookup[option.pieces[option.pieces > 0]]
        rows["label"] = new
        rows["reason"] = [
            f"split from a touching group ({len(rows)} pieces); learned: p={pi:.2f}"
            for pi in p_pieces
        ]
        added.append(rows)
        next_label += len(rows)
    split_labels = {option.label for option, _ in chosen}
    objects = pd.concat([objects[~objects["label"].isin(split_labels)], *added], ignore_index=True)
    seg = replace(c.seg, labels=labels, objects=objects.reset_index(drop=True))
    return _apply_pairs(seg, c, model, untouched=set(split_labels))


def _apply_pairs(
    seg: Segmentation, c: Candidates, model: SegmentationModel, untouched: set = frozenset()
) -> Segmentation:
    """``seg`` with the parts of its kept objects regrouped by the model's pair classifier
    (:func:`.learned_pairs.regroup`); objects split by the model (``untouched``) stay out."""
    if not model.pairs:
        return seg
    options = c.pairs if c.pairs is not None else propose_pairs(c.seg)
    if shows_sisters(options) != model.pair_sisters:
        return seg
    kept = seg.objects.loc[seg.objects["status"] == "chromosome", "label"]
    options = restrict(options, set(kept) - set(untouched))
    if len(options.pairs) == 0:
        return seg
    p = model.pair_probabilities(options.features())
    groups = regroup(options, p)
    pairs = options.pairs
    p_of = {(int(a), int(b)): pi for a, b, pi in zip(pairs["a"], pairs["b"], p, strict=True)}
    same = _same(pairs)
    cut_p = {k: v for (a, b), v in p_of.items() if (a, b) in same for k in (a, b)}
    reasons = {}
    for g in groups:
        if len(g) > 1:
            reasons[tuple(g)] = (
                f"{len(g)} parts joined as one chromosome; "
                f"learned: p={p_of.get(tuple(sorted(g)), 1.0):.2f}"
            )
        else:
            reasons[tuple(g)] = (
                "part of an object cut apart (its parts are not one chromosome); "
                f"learned: p={cut_p.get(g[0], 0.0):.2f}"
            )
    return regrouped_objects(seg, options, groups, reasons)


def _same(pairs: pd.DataFrame) -> set[tuple[int, int]]:
    """The candidate pairs (a, b) whose parts the rules made one object."""
    same = pairs["same_object"].to_numpy(bool)
    return {(int(a), int(b)) for a, b in zip(pairs["a"][same], pairs["b"][same], strict=True)}


def _not_judged(model: SegmentationModel, status: str) -> str:
    """Why the model left an object of the rules' ``status`` to the rules."""
    if not model.classify:
        return "the rules decide: the model was not better on its training spreads"
    return f"no {status} object in the training spreads"


def segment_with_model(
    image: np.ndarray,
    model: SegmentationModel,
    base: SegmentationParams | None = None,
    rules: Segmentation | None = None,
) -> Segmentation:
    """Segment with the model's settings, then let it set each object's status and split.

    ``rules``, the rules' segmentation of the same image, is reused when it was made with those
    settings (the model kept the base values), instead of segmenting again."""
    params = model.params(base)
    if rules is not None and rules.params == params:
        return apply_model(rules, model)
    return apply_model(segment_spread(image, params), model)


_NEEDED = ("area", "eccentricity", "solidity", "major_axis", "minor_axis", "mean_intensity")


def model_probabilities(objects: pd.DataFrame, model: SegmentationModel) -> np.ndarray:
    """The model's probability of each object of an objects table: its :data:`P_COLUMN`, else
    the ``learned: p=...`` of its reason, else computed from its measures (NaN for an object
    without them, e.g. one painted by hand)."""
    p = np.full(len(objects), np.nan)
    if len(objects) == 0:
        return p
    if P_COLUMN in objects:
        p = pd.to_numeric(objects[P_COLUMN], errors="coerce").to_numpy(float)
    if "reason" in objects:
        given = objects["reason"].astype(str).str.extract(_P_IN_REASON, expand=False)
        p = np.where(np.isnan(p), given.astype(float).to_numpy(), p)
    missing = np.isnan(p)
    if missing.any() and set(_NEEDED) <= set(objects.columns):
        measured = objects[list(_NEEDED)].notna().all(axis=1).to_numpy()
        todo = missing & measured
        if todo.any():
            spread = objects[measured]
            p[todo] = model.probabilities(objects[todo], spread)
    return p


def least_sure_first(seg: Segmentation | pd.DataFrame, model: SegmentationModel) -> pd.DataFrame:
    """The objects of ``seg`` (a segmentation or its objects table) with their status and the
    model's probability ``p``, those the model is least sure about first.

    Uncertainty is the distance of the model's probability from its threshold on the logit
    scale (``certainty``). Probabilities come from :func:`model_probabilities`: for a
    segmentation the model already set they are the ones it gave; objects without one (painted
    by hand) come last."""
    objects = seg if isinstance(seg, pd.DataFrame) else seg.objects
    if len(objects) == 0:
        return pd.DataFrame(columns=["label", "status", "p", "certainty"])
    p = model_probabilities(objects, model)
    q = np.clip(p, 1e-6, 1 - 1e-6)
    t = model.threshold
    certainty = np.abs(np.log(q / (1 - q)) - np.log(t / (1 - t)))
    table = pd.DataFrame(
        {
            "label": objects["label"].astype(int).to_numpy(),
            "status": objects["status"].to_numpy(),
            "p": p,
            "certainty": certainty,
        }
    )
    return table.sort_values(["certainty", "label"], kind="stable").reset_index(drop=True)


# --- what the model changed ------------------------------------------------------------------


@dataclass
class ModelChanges:
    """What a model changed against the rules on one spread: kept objects with the model and
    with the rules alone, objects split, rejected and newly kept, and one row per change
    (``change``: "split", "rejected" or "kept"; ``centroid_y``, ``centroid_x``)."""

    kept: int
    rules_kept: int
    split: int
    rejected: int
    added: int
    objects: pd.DataFrame

    def summary(self) -> str:
        """One line: "model: 47 kept (rules: 44); 3 split, 1 rejected"."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.split, "split"),
                (self.rejected, "rejected"),
                (self.added, "kept that the rules did not keep"),
            )
            if n
        ]
        changed = ", ".join(parts) if parts else "no object changed"
        return f"model: {self.kept} kept (rules: {self.rules_kept}); {changed}"


def compare_with_rules(rules: Segmentation, learned: Segmentation) -> ModelChanges:
    """What the model changed on a spread (:class:`ModelChanges`): the objects of the two
    segmentations, but the pieces of the model's splits, are matched one-to-one by box
    (IoU >= 0.5). A rules-kept object whose match
    the model does not keep is "split" when pieces of a model split lie in it, else "rejected";
    a model-kept object whose match the rules did not keep (or that has none) is "kept"."""
    r, m = rules.objects, learned.objects
    columns = ["change", "centroid_y", "centroid_x"]
    if len(m) == 0 and len(r) == 0:
        return ModelChanges(0, 0, 0, 0, 0, pd.DataFrame(columns=columns))
    r_kept = (r["status"] == "chromosome").to_numpy()
    m_kept = (m["status"] == "chromosome").to_numpy()
    piece = m["reason"].astype(str).str.match(_SPLIT_REASON.pattern).to_numpy() & m_kept
    whole = np.flatnonzero(~piece)
    boxes = m[BOX_COLUMNS].to_numpy(float)[whole]
    pairs = [(whole[i], j) for i, j in greedy_match(box_iou(boxes, r[BOX_COLUMNS].to_numpy(float)))]
    rules_of = dict(pairs)
    learned_of = {j: i for i, j in pairs}
    piece_centres = m.loc[piece, ["centroid_y", "centroid_x"]].to_numpy(float)
    rows, used_pieces = [], np.zeros(len(piece_centres), bool)
    for j in np.flatnonzero(r_kept):
        i = learned_of.get(j)
        if i is not None and m_kept[i]:
            continue
        y0, x0, y1, x1 = r[BOX_COLUMNS].iloc[j].to_numpy(float)
        inside = (
            (piece_centres[:, 0] >= y0)
            & (piece_centres[:, 0] < y1)
            & (piece_centres[:, 1] >= x0)
            & (piece_centres[:, 1] < x1)
        )
        used_pieces |= inside
        change = "split" if inside.any() else "rejected"
        rows.append((change, r["centroid_y"].iloc[j], r["centroid_x"].iloc[j]))
    orphans = np.flatnonzero(piece)[~used_pieces]
    for i in np.flatnonzero(m_kept & ~piece):
        j = rules_of.get(i)
        if j is None or not r_kept[j]:
            rows.append(("kept", m["centroid_y"].iloc[i], m["centroid_x"].iloc[i]))
    rows += [("kept", m["centroid_y"].iloc[i], m["centroid_x"].iloc[i]) for i in orphans]
    table = pd.DataFrame(rows, columns=columns)
    return ModelChanges(
        kept=int(m_kept.sum()),
        rules_kept=int(r_kept.sum()),
        split=int((table["change"] == "split").sum()),
        rejected=int((table["change"] == "rejected").sum()),
        added=int((table["change"] == "kept").sum()),
        objects=table,
    )


# --- learning from spreads reviewed in napari ------------------------------------------------


def reviewed_spread(
    name: str, image: np.ndarray, labels: np.ndarray, objects: pd.DataFrame
) -> TrainingSpread:
    """A spread whose segmentation the user reviewed (kept, rejected, painted, split, merged),
    as training data: its objects with status ``chromosome`` are the truth chromosomes, their
    boxes measured on ``labels``, as for a corrected ``chromosort segment`` folder given to
    ``--truth``."""
    if "status" not in objects or "label" not in objects:
        raise ChromosortError(f"{name}: the objects table has no statuses to learn from")
    return TrainingSpread(name, np.asarray(image), reviewed_boxes(objects, np.asarray(labels)))


def describe_model(model: SegmentationModel) -> str:
    """What a model learned from, in words: "Learned from 2 spreads: 93 chromosomes, 41 other
    objects"."""
    n = len(model.spreads)
    examples = model.examples or {}
    text = (
        f"Learned from {n} spread{'' if n == 1 else 's'}: "
        f"{examples.get('chromosome', 0)} chromosomes, {examples.get('other', 0)} other objects"
    )
    if model.splits:
        text += f"; splits touching chromosomes ({examples.get('splits_right', 0)} examples)"
    if model.pairs:
        text += (
            "; decides which neighbouring parts are one chromosome "
            f"({examples.get('pairs_right', 0)} examples)"
        )
    if not model.classify:
        text += "; the rules decide which objects are chromosomes (the model was not better)"
    return text


def _image_key(image: np.ndarray) -> str:
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()
    return f"{digest}:{array.shape}:{array.dtype}"


def _light(c: Candidates) -> Candidates:
    """Candidates without their label image and signal: what learning reads (objects, splits)."""
    seg = Segmentation(
        labels=np.zeros((0, 0), np.int32),
        objects=c.seg.objects,
        polarity=c.seg.polarity,
        params=c.seg.params,
        stats=c.seg.stats,
    )
    return Candidates(seg, c.splits, c.pairs)


@dataclass
class LearningSession:
    """Spreads reviewed in one session (by name; a spread learned again replaces its earlier
    review) and the model learned from all of them. The rules' candidates of each spread are
    remembered, so learning again only segments the spreads it has not seen."""

    grid: dict[str, list[float]] = field(default_factory=lambda: dict(SETTING_GRID))
    threshold: float = 0.5
    spreads: dict[str, TrainingSpread] = field(default_factory=dict)
    model: SegmentationModel | None = None
    _candidates: dict = field(default_factory=dict, repr=False)

    def learn(
        self, spread: TrainingSpread, base: SegmentationParams | None = None
    ) -> Generator[Progress, None, SegmentationModel]:
        """Add ``spread`` and learn from every spread of the session on top of ``base`` (the
        segmentation settings in use); returns the model. The session changes only when
        learning succeeds."""
        spreads = {**self.spreads, spread.name: spread}
        base = base or SegmentationParams()
        keys = {name: _image_key(s.image) for name, s in spreads.items()}
        todo = [
            (s, replace(base, **point))
            for s in spreads.values()
            for point in _grid_points(self.grid)
        ]
        for step, (s, params) in enumerate(todo):
            key = (keys[s.name], repr(params))
            if key not in self._candidates:
                yield Progress(step, len(todo) + 1, f"Segmenting {s.name} ({step + 1}/{len(todo)})")
                self._candidates[key] = _light(candidates(s.image, params))
        yield Progress(len(todo), len(todo) + 1, "Fitting the model")

        def cached(s: TrainingSpread, params: SegmentationParams) -> Candidates:
            """The remembered candidates of a spread with ``params``."""
            return self._candidates[(keys[s.name], repr(params))]

        model = learn_segmentation(
            list(spreads.values()), base, self.grid, self.threshold, segment=cached
        )
        self.spreads, self.model = spreads, model
        return model
