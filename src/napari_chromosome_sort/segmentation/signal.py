"""The stain signal the thresholds work on: denoising, background and the automatic threshold."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.segmentation.params import SegmentationParams


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
    from napari_chromosome_sort.denoising import nl_means, stain_noise

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
