"""Pixel noise of an image, and non-local-means denoising for noisy spreads and their crops.

A spread whose noise a light Gaussian cannot take out (a dim fluorescence exposure, a grainy
camera) is denoised before segmentation (:func:`.segmentation.denoise` decides), and the crops
of such a spread are denoised the same way (:func:`.crops.crop_object`), so that the classifier
sees chromosomes like those it was trained on rather than grain.
"""

from __future__ import annotations

import numpy as np

_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def estimate_noise(signal: np.ndarray, robust: bool = False, mask=None) -> float:
    """Standard deviation of the white pixel noise of a 2-D ``signal`` (Immerkaer 1996: the
    response to a Laplacian-difference kernel cancels smooth structure). ``robust``: from the
    median absolute response instead of the mean, for windows with strong edges; ``mask``: only
    the responses there."""
    from scipy import ndimage as ndi

    signal = np.asarray(signal, np.float32)
    if signal.ndim != 2 or min(signal.shape) < 3:
        return 0.0
    response = np.abs(ndi.convolve(signal, _KERNEL))[1:-1, 1:-1]
    if mask is not None:
        response = response[np.asarray(mask)[1:-1, 1:-1]]
        if response.size < 100:
            return 0.0
    if robust:
        return float(1.4826 * np.median(response) / 6.0)
    return float(np.sqrt(np.pi / 2) * response.mean() / 6.0)


def stain_noise(signal: np.ndarray) -> float:
    """Pixel noise of a 2-D signal with bright objects: the larger of the whole image's and the
    stained part's (robust). Photon noise grows with the signal, so a dim fluorescence image
    can be clean in its dark background and grainy on its chromosomes."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    signal = np.asarray(signal, np.float32)
    noise = estimate_noise(signal)
    smooth = ndi.gaussian_filter(signal, 2.0)
    if smooth.max() - smooth.min() < 1e-6:
        return noise
    stained = smooth > threshold_otsu(smooth)
    return max(noise, estimate_noise(signal, robust=True, mask=stained))


def nl_means(image: np.ndarray, noise: float) -> np.ndarray:
    """Non-local means of a float image (2-D, or RGB with channels last) with pixel noise
    ``noise`` (fast mode, 5 px patches searched within 6 px, cut-off 0.6 x the noise)."""
    from skimage.restoration import denoise_nl_means

    image = np.asarray(image, np.float32)
    channel_axis = -1 if image.ndim == 3 else None
    out = denoise_nl_means(
        image,
        h=0.6 * noise,
        sigma=noise,
        patch_size=5,
        patch_distance=6,
        fast_mode=True,
        channel_axis=channel_axis,
    )
    return out.astype(np.float32)


def denoise_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    """Non-local means of a dark-on-light RGB uint8 image (a crop window), its noise measured
    on itself."""
    values = np.asarray(rgb, np.float32) / 255.0  # dark on light: the stain is the dark part
    noise = float(np.mean([stain_noise(1.0 - values[..., c]) for c in range(3)]))
    if noise <= 0:
        return np.asarray(rgb)
    return np.clip(np.rint(nl_means(values, noise) * 255.0), 0, 255).astype(np.uint8)
