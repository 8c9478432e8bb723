"""What the learned segmentation model (:mod:`.learned`) chooses from on a spread: the rules'
segmentation, the splits of touching chromosomes it offers, and the pairs of parts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.learned.features import _typical
from napari_chromosome_sort.segmentation.learned.pairs import PairOptions, propose_pairs
from napari_chromosome_sort.segmentation.params import OBJECT_COLUMNS, SegmentationParams
from napari_chromosome_sort.segmentation.pipeline import segment_spread
from napari_chromosome_sort.segmentation.result import Segmentation
from napari_chromosome_sort.segmentation.splitting import whole_pieces

#: Kept objects at least this x the spread's median chromosome offer a split as candidates: two
#: touching chromosomes are together at least as large as a typical one.
SPLIT_MIN_AREA = 1.0


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
    width = seg.stats.get("width")
    windows = ndi.find_objects(seg.labels)
    options = []
    for label in objects.loc[kept & (objects["area"] >= min_area * typical), "label"]:
        window = windows[int(label) - 1]
        local = seg.labels[window] == label
        pieces = whole_pieces(local, seg.signal[window], typical, seg.params, width)
        if pieces is None:
            continue
        table = _measure_pieces(pieces, window, seg.signal)
        options.append(SplitOption(int(label), window, pieces, table))
    return options


def candidates(image: np.ndarray, params: SegmentationParams) -> Candidates:
    """The rules' segmentation of ``image`` and the splits it offers."""
    seg = segment_spread(image, params)
    return Candidates(seg, propose_splits(seg), propose_pairs(seg))
