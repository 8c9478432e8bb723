"""The learned segmentation model (:mod:`.learned`) and its file: the dataclass, its JSON format
(formats /1 to /4 read), the checks of everything a file holds, and the model in words."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic
from napari_chromosome_sort.segmentation.learned.features import (
    FEATURES,
    PRIOR_STATUSES,
    SPLIT_FEATURES,
    object_features,
    split_features,
)
from napari_chromosome_sort.segmentation.learned.pairs import PAIR_FEATURES
from napari_chromosome_sort.segmentation.params import SegmentationParams

MODEL_FORMAT = "chromosort-segmentation-model/4"
#: /1: without splits; /1 and /2: without ``statuses`` (they judge every object); /1 to /3:
#: without the pair classifier (they never regroup parts)
READ_FORMATS = (
    "chromosort-segmentation-model/1",
    "chromosort-segmentation-model/2",
    "chromosort-segmentation-model/3",
    MODEL_FORMAT,
)
#: The settings a model may re-estimate, with the values it chooses from (defaults among them):
#: how bright an object is (its threshold), how far its outline reaches, and how wide the two
#: blobs of a chromosome with separated sister chromatids may be before they count as two.
SETTING_GRID: dict[str, list[float]] = {
    "peak_fraction": [0.4, 0.5],
    "grow_fraction": [0.15, 0.2, 0.3],
    "pair_max_width_ratio": [0.7, 0.85],
}


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
