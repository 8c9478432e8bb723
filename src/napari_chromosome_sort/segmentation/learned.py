"""A segmentation model of the user's lab, learned from corrected spreads.

Two things are learned from spreads with truth boxes (:mod:`.truth`):

1. **Settings**: the object threshold and the grow-back level (``peak_fraction``,
   ``grow_fraction`` of :class:`.SegmentationParams`) chosen from :data:`SETTING_GRID` by the
   truth boxes found on the training spreads (ties go to the shipped defaults).
2. **An object classifier**: a standardised logistic regression over the candidate objects of the
   segmentation with those settings. Its features (:data:`FEATURES`) are the shape and intensity
   measures of the objects table made relative to the spread (area and intensity over the
   spread's median chromosome), so that they carry over to other spreads, and the status the
   rules gave. Target: the object's box matches a truth box at IoU >= 0.5 (one-to-one).

Applied, objects with probability >= the model's threshold become ``chromosome`` (reason
``learned: p=0.93``); the others keep their status, or, if the rules had kept them, become
``debris`` (smaller than the typical chromosome) or ``cluster``.

The model file is JSON (no pickle): the format, feature names, numbers, settings and the names of
the spreads it learned from. Reading checks all of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_bytes_atomic
from ..errors import ChromosortError
from .params import SegmentationParams
from .pipeline import segment_spread
from .result import Segmentation
from .truth import matched_objects

MODEL_FORMAT = "chromosort-segmentation-model/1"
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
#: The settings a model may re-estimate, with the values it chooses from (defaults among them).
SETTING_GRID: dict[str, list[float]] = {
    "peak_fraction": [0.4, 0.5],
    "grow_fraction": [0.15, 0.2, 0.3],
}


@dataclass
class TrainingSpread:
    """One annotated spread: its name, image and truth chromosome boxes (n, 4: y0, x0, y1, x1)."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def _typical(values: pd.Series, kept: pd.Series) -> float:
    """The median over the kept objects (all objects when none is kept), at least a tiny bit."""
    pool = values[kept] if kept.any() else values
    return max(float(np.median(pool)), 1e-6) if len(pool) else 1.0


def object_features(objects: pd.DataFrame) -> np.ndarray:
    """The (n, len(FEATURES)) features of an objects table, relative to its spread."""
    if len(objects) == 0:
        return np.zeros((0, len(FEATURES)))
    kept = objects["status"] == "chromosome"
    columns = [
        np.log(objects["area"] / _typical(objects["area"], kept)),
        objects["eccentricity"],
        objects["solidity"],
        objects["major_axis"] / _typical(objects["major_axis"], kept),
        objects["minor_axis"] / _typical(objects["minor_axis"], kept),
        np.log(
            np.clip(
                objects["mean_intensity"] / _typical(objects["mean_intensity"], kept), 1e-3, None
            )
        ),
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
    spreads: tuple[str, ...] = ()
    examples: dict = field(default_factory=dict)  # {"chromosome": n, "other": m}
    features: tuple[str, ...] = FEATURES

    def __post_init__(self):
        _check_model(self)

    def probabilities(self, objects: pd.DataFrame) -> np.ndarray:
        """P(one annotated chromosome) of each row of an objects table."""
        x = object_features(objects)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def params(self, base: SegmentationParams | None = None) -> SegmentationParams:
        """``base`` (default: the shipped defaults) with the learned settings."""
        return replace(base or SegmentationParams(), **self.settings)

    def to_json(self) -> str:
        return json.dumps({"format": MODEL_FORMAT, **asdict(self)}, indent=1)

    def save(self, path: str | Path) -> Path:
        return write_bytes_atomic(path, self.to_json().encode())

    @classmethod
    def from_dict(cls, data) -> SegmentationModel:
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ChromosortError(f"not a segmentation model (expected format {MODEL_FORMAT!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            for key in ("mean", "scale", "coef", "features", "spreads"):
                fields[key] = tuple(fields[key])
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


def load_segmentation_model(path: str | Path) -> SegmentationModel:
    """The model of a JSON file written by :meth:`SegmentationModel.save`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChromosortError(f"cannot read segmentation model {path}: {exc}") from None
    return SegmentationModel.from_dict(data)


# --- learning --------------------------------------------------------------------------------


def _grid_points(grid: dict[str, list[float]]) -> list[dict]:
    import itertools

    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _found(seg: Segmentation, boxes: np.ndarray) -> int:
    """Truth boxes matched by a kept object."""
    kept = seg.objects[seg.objects["status"] == "chromosome"]
    return int(matched_objects(boxes, kept).sum())


Segmenter = Callable[[TrainingSpread, SegmentationParams], Segmentation]


def _segment(spread: TrainingSpread, params: SegmentationParams) -> Segmentation:
    return segment_spread(spread.image, params)


def choose_settings(
    spreads: Sequence[TrainingSpread],
    base: SegmentationParams,
    grid: dict[str, list[float]],
    progress: Callable[[str], None] | None = None,
    segment: Segmenter = _segment,
) -> tuple[dict, list[Segmentation]]:
    """(settings, their segmentation of each spread): the grid point that finds the most truth
    boxes on ``spreads`` (ties: the base values, then the first point)."""
    best: tuple[float, dict, list[Segmentation]] | None = None
    for point in _grid_points(grid):
        segs = [segment(s, replace(base, **point)) for s in spreads]
        score = sum(_found(seg, s.boxes) for seg, s in zip(segs, spreads, strict=True))
        score += 0.5 * all(getattr(base, k) == v for k, v in point.items())
        if progress:
            progress(f"settings {point}: {int(score)} boxes found")
        if best is None or score > best[0]:
            best = (score, point, segs)
    return best[1], best[2]


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coef, intercept) of a standardised L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    if y.all():  # nothing but chromosomes: keep every candidate
        return mean, scale, np.zeros(x.shape[1]), 4.0
    fit = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    return mean, scale, fit.coef_[0], float(fit.intercept_[0])


def learn_segmentation(
    spreads: Sequence[TrainingSpread],
    base: SegmentationParams | None = None,
    grid: dict[str, list[float]] | None = None,
    threshold: float = 0.5,
    progress: Callable[[str], None] | None = None,
    segment: Segmenter = _segment,
) -> SegmentationModel:
    """Learn settings and an object classifier from annotated spreads (module docstring);
    ``segment`` may be a cached :func:`segment_spread` (the validation's)."""
    if not spreads:
        raise ChromosortError("no annotated spreads to learn from")
    base = base or SegmentationParams()
    settings, segs = choose_settings(spreads, base, grid or SETTING_GRID, progress, segment)
    x = np.vstack([object_features(seg.objects) for seg in segs])
    y = np.concatenate(
        [matched_objects(s.boxes, seg.objects) for seg, s in zip(segs, spreads, strict=True)]
    )
    if not y.any():
        raise ChromosortError(
            "no candidate object matches a truth box (IoU >= 0.5): check that the truth belongs "
            "to these images"
        )
    mean, scale, coef, intercept = _fit(x, y)
    return SegmentationModel(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in coef),
        intercept=float(intercept),
        threshold=float(threshold),
        settings={k: float(v) for k, v in settings.items()},
        spreads=tuple(s.name for s in spreads),
        examples={"chromosome": int(y.sum()), "other": int((~y).sum())},
    )


# --- applying --------------------------------------------------------------------------------


def apply_model(seg: Segmentation, model: SegmentationModel) -> Segmentation:
    """``seg`` with statuses and reasons set by the model's classifier (module docstring)."""
    objects = seg.objects.copy()
    if len(objects) == 0:
        return seg
    p = model.probabilities(objects)
    keep = p >= model.threshold
    was_kept = (objects["status"] == "chromosome").to_numpy()
    small = (
        objects["area"] < _typical(objects["area"], objects["status"] == "chromosome")
    ).to_numpy()
    rejected = np.where(small, "debris", "cluster")
    status = np.where(keep, "chromosome", np.where(was_kept, rejected, objects["status"]))
    reason = [
        f"learned: p={pi:.2f}" if k else f"{r}; learned: p={pi:.2f}"
        for pi, k, r in zip(p, keep, objects["reason"].astype(str), strict=True)
    ]
    objects["status"] = status
    objects["reason"] = reason
    return replace(seg, objects=objects)


def segment_with_model(
    image: np.ndarray, model: SegmentationModel, base: SegmentationParams | None = None
) -> Segmentation:
    """Segment with the model's settings, then let its classifier set each object's status."""
    return apply_model(segment_spread(image, model.params(base)), model)
