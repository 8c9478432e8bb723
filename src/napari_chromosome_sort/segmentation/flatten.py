"""Flattening of uneven stain: chromosomes of one fluorescence spread can be several times
brighter on one side than on the other (uneven excitation, stain uptake or focus), and a
threshold set by the spread's typical chromosome then finds only the bright side, or pieces of
the dim one. The signal is divided by a smooth field of local chromosome brightness, so that
every part of the spread is thresholded relative to the chromosomes around it."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.segmentation.params import SegmentationParams, switched_on

#: stained pixels for the field: above this x the pixel noise (not Otsu, which a bright nucleus
#: can set far above the dim chromosomes)
STAIN_NOISE_K = 4.0
#: pieces between these x the typical object size (at the spread's low threshold) give the field
PIECE_AREA = (0.25, 4.0)
#: the field is clipped to [1 / LIMIT, LIMIT] x the spread's typical chromosome peak
LIMIT = 4.0


def flatten_on(params: SegmentationParams, polarity: str) -> bool:
    """Whether the stain is flattened (by ``flatten_brightness`` and the polarity)."""
    # on the Giemsa validation spreads (bright-field, large nuclei around the chromosomes) the
    # field cost two of five spreads every chromosome (docs/validation.md, "Uneven stain")
    return switched_on(params.flatten_brightness, polarity)


def brightness_field(
    corrected: np.ndarray, noise: float, params: SegmentationParams
) -> np.ndarray | None:
    """The local chromosome brightness relative to the spread's typical one (1 = typical), or
    None when too few chromosome-sized pieces are stained to tell.

    Each stained piece (above ``STAIN_NOISE_K`` x ``noise``) of chromosome size, away from
    interphase nuclei, contributes its peak at its pixels; the field is their Gaussian-weighted
    average (``flatten_scale`` x the image's shorter side), over the area-weighted median peak.
    """
    from scipy import ndimage as ndi

    from napari_chromosome_sort.segmentation.nuclei import find_nuclei
    from napari_chromosome_sort.segmentation.signal import (
        component_levels,
        spread_levels,
        weighted_median,
    )

    levels = spread_levels(corrected, params)
    if levels is None:
        return None
    lab, n = ndi.label(corrected > STAIN_NOISE_K * noise)
    if n == 0:
        return None
    nuclei = find_nuclei(corrected, levels.typical_area, levels.low, params)
    if nuclei.any():
        nuclei = ndi.binary_dilation(nuclei, iterations=3)
    areas = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(float)
    in_nucleus = np.bincount(lab.ravel(), weights=nuclei.ravel(), minlength=n + 1)[1:]
    sized = (areas >= PIECE_AREA[0] * levels.typical_area) & (in_nucleus == 0)
    if sized.sum() < 3:
        return None
    typical = weighted_median(areas[sized], areas[sized])
    use = sized & (areas < PIECE_AREA[1] * typical)
    if use.sum() < 3:
        return None
    peaks = component_levels(corrected, lab, n, params.peak_quantile)
    typical_peak = weighted_median(peaks[use], areas[use])
    if typical_peak <= 0:
        return None
    weight = np.concatenate([[False], use])[lab]
    peak_map = np.where(weight, np.concatenate([[0.0], peaks])[lab], 0.0)
    sigma = float(params.flatten_scale) * min(corrected.shape)
    total = ndi.gaussian_filter(peak_map, sigma, mode="nearest")
    density = ndi.gaussian_filter(weight.astype(np.float64), sigma, mode="nearest")
    local = np.where(density > 1e-4, total / np.maximum(density, 1e-4), typical_peak)
    return np.clip(local / typical_peak, 1.0 / LIMIT, LIMIT).astype(np.float32)


def flatten(
    corrected: np.ndarray, noise: float, params: SegmentationParams, polarity: str
) -> np.ndarray:
    """``corrected`` divided by its :func:`brightness_field` where flattening is on."""
    if not flatten_on(params, polarity):
        return corrected
    field = brightness_field(corrected, noise, params)
    return corrected if field is None else (corrected / field).astype(np.float32)
