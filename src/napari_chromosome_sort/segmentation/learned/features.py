"""Features of the learned segmentation model (:mod:`.learned`): the measures of an object and of
a proposed split, relative to their spread, that its classifiers read."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def _typical_area(objects: pd.DataFrame) -> float:
    return _typical(objects["area"], objects["status"] == "chromosome")
