"""The result of a segmentation: a label image and one row per object with status and reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.params import OBJECT_COLUMNS, STATUSES, SegmentationParams

if TYPE_CHECKING:
    from napari_chromosome_sort.segmentation.pairing import PairLimits


@dataclass
class Segmentation:
    """A label image and its objects table (one row per label, with status and reason)."""

    labels: np.ndarray  # int32 HxW, 0 = background
    objects: pd.DataFrame
    polarity: str = "dark_on_light"
    params: SegmentationParams = field(default_factory=SegmentationParams)
    signal: np.ndarray | None = field(default=None, repr=False)  # corrected signal, objects bright
    stats: dict = field(default_factory=dict)  # thresholds and typical sizes actually used
    #: the full mask of each ``crossing-resolved`` object whose shared crossing pixels carry its
    #: partner's label in ``labels``: label -> (window top, window left, mask in the window)
    crossing_masks: dict = field(default_factory=dict, repr=False)
    #: the spread's limits of sister-chromatid pairing (:class:`.pairing.PairLimits`), when found
    pair_limits: PairLimits | None = field(default=None, repr=False)

    def kept_labels(self) -> list[int]:
        """Labels of the objects kept as chromosomes."""
        if self.objects.empty:
            return []
        return [int(v) for v in self.objects.loc[self.objects["status"] == "chromosome", "label"]]

    def full_mask(self, label: int) -> np.ndarray:
        """The whole mask of object ``label``: its pixels in ``labels`` plus, for the second
        chromosome of a resolved crossing, the crossing pixels it shares with the first."""
        mask = self.labels == label
        if label in self.crossing_masks:
            y0, x0, local = self.crossing_masks[label]
            mask[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] |= local
        return mask

    def status_counts(self) -> dict[str, int]:
        """Number of objects of each status (every status, 0 included)."""
        counts = self.objects["status"].value_counts().to_dict() if len(self.objects) else {}
        return {status: int(counts.get(status, 0)) for status in STATUSES}


def empty_segmentation(shape, polarity, params, signal) -> Segmentation:
    """A segmentation without objects (nothing stained)."""
    return Segmentation(
        labels=np.zeros(shape, np.int32),
        objects=pd.DataFrame(columns=OBJECT_COLUMNS),
        polarity=polarity,
        params=params,
        signal=signal,
    )


def build_segmentation(
    label_img, objects, signal, polarity, params, shape, stats=None
) -> Segmentation:
    """The ``Segmentation`` of a finished label image: each object measured, with its status."""
    from skimage.measure import regionprops

    if not objects:
        return empty_segmentation(shape, polarity, params, signal)
    info = {o["label"]: o for o in objects}
    rows = []
    for region in regionprops(label_img, intensity_image=signal):
        o = info[region.label]
        y0, x0, y1, x1 = region.bbox
        cy, cx = region.centroid
        rows.append(
            {
                "label": int(region.label),
                "status": o["status"],
                "reason": o["reason"],
                "area": int(region.area),
                "bbox_y0": int(y0),
                "bbox_x0": int(x0),
                "bbox_y1": int(y1),
                "bbox_x1": int(x1),
                "centroid_y": float(cy),
                "centroid_x": float(cx),
                "eccentricity": float(region.eccentricity),
                "solidity": float(region.solidity),
                "major_axis": float(region.axis_major_length),
                "minor_axis": float(region.axis_minor_length),
                "orientation": float(region.orientation),
                "mean_intensity": float(region.intensity_mean),
                "n_parts": int(o["n_parts"]),
            }
        )
    table = pd.DataFrame(rows, columns=OBJECT_COLUMNS)
    return Segmentation(
        labels=label_img,
        objects=table,
        polarity=polarity,
        params=params,
        signal=signal,
        stats=stats or {},
    )
