"""Noise estimates for denoising: white noise, and photon noise that grows with the stain."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.denoising import estimate_noise, stain_noise
from napari_chromosome_sort.files.io import chromosome_signal
from napari_chromosome_sort.segmentation import segment_spread
from napari_chromosome_sort.synthetic import make_spread


def test_stain_noise_sees_photon_noise_on_the_chromosomes():
    """A dim fluorescence exposure: Poisson noise, none in the dark background, strong on the
    chromosomes. The whole-image estimate is diluted by the clean background; the stained
    part's is not, and it is what makes segmentation denoise."""
    spread = make_spread(seed=3, modality="dapi", n_nuclei=0)
    image = spread.image.astype(float)
    peak = np.quantile(image, 0.999)
    rng = np.random.default_rng(0)
    dim = np.clip(image - 12, 0, None)  # no background offset: a dark, photon-free background
    photons = rng.poisson(dim / peak * 20) * (peak / 20)
    noisy = np.clip(photons, 0, 255).astype(np.uint8)
    signal = chromosome_signal(noisy, "bright_on_dark")
    whole, stained = estimate_noise(signal), stain_noise(signal)
    assert stained > 1.5 * whole
    clean = chromosome_signal(spread.image, "bright_on_dark")
    assert stain_noise(clean) < 0.5 * stained
    assert segment_spread(noisy).stats["denoised"]
    assert not segment_spread(spread.image).stats["denoised"]


def test_estimate_noise_mask_and_degenerate_inputs():
    rng = np.random.default_rng(1)
    image = np.zeros((64, 64), np.float32)
    image[:, 32:] = rng.normal(0, 0.1, (64, 32))
    mask = np.zeros(image.shape, bool)
    mask[:, 34:] = True
    assert abs(estimate_noise(image, robust=True, mask=mask) - 0.1) < 0.02
    assert estimate_noise(image, mask=np.zeros(image.shape, bool)) == 0.0
    assert estimate_noise(np.zeros((2, 2))) == 0.0
    assert stain_noise(np.zeros((32, 32), np.float32)) == 0.0
