"""Interphase nuclei: large, round regions of faint but continuous stain."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.segmentation.shapes import shape_props


def find_nuclei(corrected, med_low, t_low, params) -> np.ndarray:
    """Mask of interphase nuclei: large, round, almost fully stained regions above the noise
    floor, opened with a disk wider than a chromosome so that chromosomes lying against them
    fall away."""
    from scipy import ndimage as ndi

    shape = corrected.shape
    step = max(1, corrected.size // 400_000)
    sample = corrected.ravel()[::step]
    center = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - center))) + 1e-6
    floor = min(center + params.nucleus_noise_k * sigma, t_low)
    scale = np.sqrt(med_low)
    f = max(1, int(scale // 8))  # work downsampled: nuclei are large
    small = corrected[::f, ::f]
    smooth = ndi.gaussian_filter(small, max(1.0, params.nucleus_smooth_factor * scale / f))
    mask = smooth > floor
    radius = max(2, int(round(scale * params.nucleus_opening_factor / f)))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    opened = ndi.binary_opening(np.pad(mask, radius), structure=disk)[
        radius:-radius, radius:-radius
    ]
    lab, n = ndi.label(opened)
    out_small = np.zeros(small.shape, bool)
    min_area = params.nucleus_area_factor * med_low / (f * f)
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        local = ndi.binary_fill_holes(lab[sl] == i)
        area = local.sum()
        if area < min_area:
            continue
        p = shape_props(local)
        values = smooth[sl][local]
        fill = float(np.mean(values > params.nucleus_fill_level * np.quantile(values, 0.9)))
        if (
            p["solidity"] >= params.nucleus_min_solidity
            and p["eccentricity"] <= params.nucleus_max_eccentricity
            and fill >= params.nucleus_min_fill
        ):
            out_small[sl] |= local
    if f > 1:
        out = np.repeat(np.repeat(out_small, f, axis=0), f, axis=1)[: shape[0], : shape[1]]
        pad = ((0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1]))
        out = np.pad(out, pad, mode="edge")
    else:
        out = out_small
    return out
