"""The naive baseline every segmentation figure is set beside.

Otsu's threshold on a background-corrected grey image, connected components, size limits: what
a user gets from a few lines of scikit-image. Objects between 0.2 x and 3 x the median component
area (of components >= 20 px) are kept as ``chromosome``; nothing else is decided.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.measure import regionprops_table

MIN_AREA_PX = 20
SIZE_LIMITS = (0.2, 3.0)  # x the median component area


def otsu_objects(image: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """(labels, object table with ``status`` and bbox columns) of the naive baseline."""
    grey = image.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=-1)
    if np.median(grey) > grey.mean():  # mostly bright: bright-field, stain is dark
        grey = grey.max() - grey
    small = grey[::4, ::4]
    size = max(5, min(small.shape) // 8)
    background = ndi.zoom(ndi.grey_opening(small, size=(size, size)), 4, order=1)
    corrected = grey - background[: grey.shape[0], : grey.shape[1]]
    labels, _ = ndi.label(corrected > threshold_otsu(corrected))
    table = pd.DataFrame(regionprops_table(labels, properties=("label", "area", "bbox")))
    table = table.rename(
        columns={"bbox-0": "bbox_y0", "bbox-1": "bbox_x0", "bbox-2": "bbox_y1", "bbox-3": "bbox_x1"}
    )
    table = table[table.area >= MIN_AREA_PX].reset_index(drop=True)
    median = float(table.area.median()) if len(table) else 0.0
    lo, hi = SIZE_LIMITS
    keep = (table.area >= lo * median) & (table.area <= hi * median)
    table["status"] = np.where(keep, "chromosome", "debris")
    return labels, table
