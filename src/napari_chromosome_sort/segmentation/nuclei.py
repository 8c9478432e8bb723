"""Interphase nuclei: large, round regions of faint but continuous stain; and large, convex
objects set aside as clusters."""

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


def name_convex_clusters(label_img, objects, med_obj: float, params) -> int:
    """Objects set aside as ``cluster`` that are large and convex are nuclei, not chromosomes
    heaped or crossing (whose outline has the notches of separate arms): a cluster of solidity
    >= ``nucleus_convex_solidity`` and at least ``nucleus_convex_area_factor`` x the median core
    becomes ``nucleus``, its reason quoting both numbers. Run after the crossing steps, so it
    changes what an object is called, never what is kept or resolved. Returns how many."""
    from scipy import ndimage as ndi

    clusters = {o["label"]: o for o in objects if o["status"] == "cluster"}
    if not clusters or med_obj <= 0:
        return 0
    named = 0
    for label, sl in enumerate(ndi.find_objects(label_img), 1):
        o = clusters.get(label)
        if o is None or sl is None:
            continue
        mask = label_img[sl] == label
        area = int(mask.sum())
        if area < params.nucleus_convex_area_factor * med_obj:
            continue
        solidity = shape_props(mask)["solidity"]
        if solidity < params.nucleus_convex_solidity:
            continue
        o["status"] = "nucleus"
        o["reason"] = (
            f"large and convex ({area} px, {area / med_obj:.1f}x the median core; solidity "
            f"{solidity:.2f} >= {params.nucleus_convex_solidity:g}): interphase nucleus"
        )
        named += 1
    return named
