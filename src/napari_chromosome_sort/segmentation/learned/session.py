"""Learning the segmentation model (:mod:`.learned`) from spreads reviewed in napari: a reviewed
spread as training data, and a session that learns from all of its spreads."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress
from napari_chromosome_sort.segmentation.learned.candidates import Candidates, candidates
from napari_chromosome_sort.segmentation.learned.model import SETTING_GRID, SegmentationModel
from napari_chromosome_sort.segmentation.learned.training import (
    TrainingSpread,
    _grid_points,
    learn_segmentation,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams
from napari_chromosome_sort.segmentation.result import Segmentation
from napari_chromosome_sort.segmentation.truth import reviewed_boxes


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
