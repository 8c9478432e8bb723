"""The stain signal the thresholds work on: denoising, background, the automatic threshold and
the spread's levels (object threshold, typical object size)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_chromosome_sort.denoising import nl_means, stain_noise
from napari_chromosome_sort.segmentation.params import SegmentationParams
from napari_chromosome_sort.segmentation.shapes import round_blobs


def estimate_background(signal: np.ndarray, params: SegmentationParams) -> np.ndarray:
    """Smooth background of the signal: a large grey opening (or a fit to the background
    pixels only, ``background_method="masked"``) on a downsampled copy."""
    from scipy import ndimage as ndi

    f = max(1, int(params.background_downsample))
    small = ndi.gaussian_filter(signal, 2.0)[::f, ::f] if f > 1 else signal
    size = max(5, int(round(min(signal.shape) * params.background_fraction / f)))
    if params.background_method == "opening":
        bg = ndi.grey_opening(small, size=(size, size))
        bg = ndi.uniform_filter(bg, size)
    else:
        # smooth interpolation of the background pixels only (robustly below the stain), so
        # that objects of any size (large nuclei included) are not taken for background
        center = float(np.median(small))
        sigma = 1.4826 * float(np.median(np.abs(small - center))) + 1e-6
        is_bg = small < center + params.background_k * sigma
        is_bg = ndi.binary_erosion(is_bg, iterations=2, border_value=1)
        if is_bg.mean() < 0.05:
            is_bg = small <= np.quantile(small, 0.3)
        weight = ndi.gaussian_filter(is_bg.astype(np.float32), size / 2.0, mode="nearest")
        total = ndi.gaussian_filter(np.where(is_bg, small, 0.0), size / 2.0, mode="nearest")
        bg = np.where(weight > 1e-3, total / np.maximum(weight, 1e-3), center)
    if f > 1:
        bg = ndi.zoom(
            bg,
            (signal.shape[0] / bg.shape[0], signal.shape[1] / bg.shape[1]),
            order=1,
            grid_mode=True,
            mode="nearest",
        )
        bg = bg[: signal.shape[0], : signal.shape[1]]
    return bg.astype(np.float32)


def denoise(raw: np.ndarray, params: SegmentationParams) -> tuple[np.ndarray, float, bool]:
    """(signal, its pixel noise, whether it was denoised). A signal (in [0, 1]) whose noise the
    ``smooth_sigma`` Gaussian would leave above ``max_noise`` (white noise: sigma_n / (2 sqrt(pi)
    s)) is denoised first by non-local means, which keeps thin chromatids and the gaps between
    them that a wider Gaussian would blur together."""
    noise = stain_noise(raw)
    # (a Gaussian narrower than half a pixel averages next to nothing)
    left = noise / (2.0 * np.sqrt(np.pi) * max(float(params.smooth_sigma), 0.5))
    if params.max_noise <= 0 or left <= params.max_noise:
        return raw, noise, False
    return nl_means(raw, noise), noise, True


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu threshold of the finite values (subsampled to 400 000); inf when they are flat."""
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size == 0 or values.max() - values.min() < 1e-6:
        return float("inf")
    step = max(1, values.size // 400_000)
    return float(threshold_otsu(values[::step]))


@dataclass
class Levels:
    """The spread's intensity levels and typical object size, as measured at the low threshold."""

    low: float  # Otsu threshold: everything stained
    object: float  # object threshold: a fraction of the typical object peak
    typical_peak: float
    typical_area: float  # area-weighted median of the low-threshold components


def spread_levels(corrected: np.ndarray, params: SegmentationParams) -> Levels | None:
    """The thresholds and typical object size; None when nothing is stained."""
    from scipy import ndimage as ndi

    t_low = otsu_threshold(corrected)
    if not np.isfinite(t_low):
        return None
    low_lab, n_low = ndi.label(corrected > t_low)
    low_areas = np.bincount(low_lab.ravel(), minlength=n_low + 1)
    low_areas[0] = 0
    peaks = component_levels(corrected, low_lab, n_low, params.peak_quantile)
    ok = low_areas[1:] >= max(params.min_area_px, 3)
    if not ok.any():
        return None
    med_low = float(np.median(low_areas[1:][ok]))
    # nucleus-like blobs are left out of the typical object size: where nuclei hold most of the
    # stain they would otherwise set it, and nuclei would then be too small to be found
    nucleus_like = round_blobs(low_lab, low_areas, 5 * med_low, params)
    typical = ok & (low_areas[1:] < 20 * med_low) & ~nucleus_like
    if typical.any():
        # area-weighted medians: the size and peak of the object an average stained pixel
        # belongs to, robust to many specks of debris or nucleus texture
        sizes = low_areas[1:][typical].astype(float)
        med_low = weighted_median(sizes, sizes)
        typical_peak = weighted_median(peaks[typical], sizes)
    else:
        typical_peak = float(peaks.max())
    if params.threshold is not None:
        t_obj = float(params.threshold)
    else:
        t_obj = max(t_low, params.peak_fraction * typical_peak)
    return Levels(low=t_low, object=t_obj, typical_peak=typical_peak, typical_area=med_low)


def component_levels(values, labels, n, q: float) -> np.ndarray:
    """The ``q`` quantile of ``values`` in each of the ``n`` labelled components."""
    if n == 0:
        return np.zeros(0)
    flat = labels.ravel()
    inside = flat > 0
    lab, val = flat[inside], values.ravel()[inside]
    order = np.lexsort((val, lab))
    lab, val = lab[order], val[order]
    starts = np.searchsorted(lab, np.arange(1, n + 1))
    counts = np.bincount(lab, minlength=n + 1)[1:]
    pick = starts + np.floor(q * np.maximum(counts - 1, 0)).astype(int)
    return val[np.minimum(pick, len(val) - 1)]


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half of the total weight lies."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
