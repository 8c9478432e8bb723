"""Shape measures of single binary objects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_chromosome_sort.segmentation.params import SegmentationParams


def shape_props(mask: np.ndarray) -> dict:
    """Shape measures of one binary mask (local crop)."""
    from skimage.measure import regionprops

    region = regionprops(mask.astype(np.uint8))[0]
    return {
        "area": int(region.area),
        "eccentricity": float(region.eccentricity),
        "solidity": float(region.solidity),
        "major_axis": float(region.axis_major_length),
        "minor_axis": float(region.axis_minor_length),
        "orientation": float(region.orientation),
    }


@dataclass(frozen=True)
class Region:
    """The measures of one labelled region that pairing reads, as skimage's ``regionprops``
    defines them (axes from the inertia tensor's eigenvalues, orientation in radians)."""

    label: int
    area: float
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    axis_major_length: float
    axis_minor_length: float
    orientation: float


def region_measures(labels: np.ndarray) -> dict[int, Region]:
    """label -> :class:`Region` of every label of ``labels``, measured in one vectorised pass
    (``regionprops`` measures each region in its own Python call)."""
    from scipy import ndimage as ndi

    flat = labels.ravel()
    where = np.flatnonzero(flat > 0)
    ids = flat[where]
    rows, cols = np.divmod(where, labels.shape[1])
    n = int(labels.max()) + 1 if labels.size else 1
    area = np.bincount(ids, minlength=n).astype(float)
    safe = np.maximum(area, 1.0)
    row_c = np.bincount(ids, rows, n) / safe
    col_c = np.bincount(ids, cols, n) / safe
    dr, dc = rows - row_c[ids], cols - col_c[ids]
    a = np.bincount(ids, dc * dc, n) / safe  # inertia tensor [[a, b], [b, c]]
    b = -np.bincount(ids, dr * dc, n) / safe
    c = np.bincount(ids, dr * dr, n) / safe
    tensor = np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2)
    eig = np.clip(np.linalg.eigvalsh(tensor), 0.0, None)  # ascending
    with np.errstate(invalid="ignore"):
        orientation = np.where(
            a - c == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(-2 * b, c - a)
        )
    out = {}
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is not None:
            out[i] = Region(
                i,
                float(area[i]),
                (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
                (float(row_c[i]), float(col_c[i])),
                4.0 * float(np.sqrt(eig[i, 1])),
                4.0 * float(np.sqrt(eig[i, 0])),
                float(orientation[i]),
            )
    return out


def solidity(mask: np.ndarray) -> float:
    """Area over convex-hull area of one binary mask (``shape_props(mask)["solidity"]``, without
    the other measures)."""
    from skimage.measure import regionprops

    return float(regionprops(mask.astype(np.uint8))[0].solidity)


def angle_diff(a: float, b: float) -> float:
    """Smallest difference between two orientations (radians, modulo pi)."""
    d = abs(a - b) % np.pi
    return float(min(d, np.pi - d))


def round_blobs(lab, areas, min_area: float, params: SegmentationParams) -> np.ndarray:
    """Per component 1..n of ``lab``: larger than ``min_area``, round and solid like an interphase
    nucleus (``nucleus_min_solidity``, ``nucleus_max_eccentricity``), not like a chromosome or a
    group of them."""
    from scipy import ndimage as ndi

    out = np.zeros(len(areas) - 1, bool)
    big = np.flatnonzero(areas[1:] > min_area)
    if big.size:
        slices = ndi.find_objects(lab)
        for i in big:
            p = shape_props(lab[slices[i]] == i + 1)
            out[i] = (
                p["solidity"] >= params.nucleus_min_solidity
                and p["eccentricity"] <= params.nucleus_max_eccentricity
            )
    return out


def skeleton_branched(mask: np.ndarray, prune: float) -> bool:
    """True when the skeleton of ``mask`` still branches (a point with >= 3 neighbours, or >= 3
    end points) after spurs shorter than ``prune`` px have been pruned away."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    kernel = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
    skel = skeletonize(np.pad(mask, 1))
    for _ in range(max(1, int(round(prune)))):
        nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
        ends = skel & (nb <= 1)
        if not ends.any():
            break
        skel &= ~ends
    nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
    return bool((skel & (nb >= 3)).any() or (skel & (nb == 1)).sum() >= 3)


def neighbour_pairs(label_img: np.ndarray, allowed: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Where two different labels, both ``allowed`` (bool per label), are 4-neighbours: per
    axis (0 = rows, 1 = columns), the mask over the pixel pairs (``label_img`` without its last
    row / column, paired with the next pixel along that axis)."""
    out = []
    for axis in (0, 1):
        a, b = pair_sides(label_img, axis)
        sel = (a != b) & allowed[a] & allowed[b]
        if sel.any():
            out.append((axis, sel))
    return out


def pair_sides(image: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The two sides of the 4-neighbour pixel pairs along ``axis`` (see :func:`neighbour_pairs`)."""
    return (image[:-1], image[1:]) if axis == 0 else (image[:, :-1], image[:, 1:])
