"""Canonical appearance of chromosome crops: one look for published crops and raw spread crops.

The training crops of Ikemoto et al. (2022) are contrast-enhanced (dark purple chromosome on pure
white, the chromosome filling ~70 % of the crop). Crops cut from raw Giemsa spreads are low contrast
(grey background ~100, chromosome ~40) and framed differently. A network trained on one and shown
the other mostly answers "type C". :func:`canonical_appearance` removes both differences using only
quantities measured on the crop itself (no per-dataset tuning):

1. grey level ``g`` = mean of the RGB channels;
2. background level ``b`` = median of the crop's border ring (crops are blanked / padded with
   background, so the ring is background), chromosome level ``f`` = 2nd percentile of ``g``;
3. contrast map ``t = clip((g - f) / (WHITE_AT * (b - f)), 0, 1)`` (0 = chromosome core,
   1 = background; everything within 15 % of the background level becomes pure white, which removes
   the background noise and staining haze);
4. scale: object mask ``t < 0.5`` (small specks dropped), square window centred on the mask's
   bounding box whose side is ``extent / FILL`` with ``FILL = 0.72`` (the median object-to-crop
   extent ratio of the published crops), padded with white;
5. rendering ``out_c = CORE_c + t * (255 - CORE_c)`` with a fixed purple ``CORE`` colour.

See ``docs/crops.md`` for the statistics before and after.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: chromosome core colour of the canonical rendering (purple, like Giemsa crops)
CORE_RGB = (86.0, 62.0, 118.0)
#: object extent / crop side after reframing (median of the published WT crops)
FILL = 0.72
#: fraction of the background-to-core contrast above which a pixel is rendered pure white
WHITE_AT = 0.85
#: default output side (px)
DEFAULT_SIZE = 128


@dataclass(frozen=True)
class CanonicalWindow:
    """Square window (input-crop pixel coordinates, may extend past the edges) that is resampled
    to the canonical output; ``side`` in input pixels, ``size`` output side."""

    y0: float
    x0: float
    side: float
    size: int

    def to_input(self, heatmap: np.ndarray, input_shape: tuple[int, int]) -> np.ndarray:
        """Map a map covering the canonical output back onto the input crop grid (0 outside)."""
        from scipy import ndimage

        heatmap = np.asarray(heatmap, dtype=np.float32)
        h, w = input_shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        scale_y = heatmap.shape[0] / self.side
        scale_x = heatmap.shape[1] / self.side
        # pixel centres: input (y + 0.5) -> output ((y + 0.5 - y0) * scale - 0.5)
        oy = (yy + 0.5 - self.y0) * scale_y - 0.5
        ox = (xx + 0.5 - self.x0) * scale_x - 0.5
        out = ndimage.map_coordinates(heatmap, [oy, ox], order=1, mode="constant", cval=0.0)
        return out.astype(np.float32)


def _to_rgb_float(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB crop HxWx3, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        hi = float(arr.max()) if arr.size else 1.0
        if hi > 255.0 or (hi <= 1.0 and np.issubdtype(arr.dtype, np.floating)):
            arr = arr / max(hi, 1e-12) * 255.0
    return arr.astype(np.float64)


def _channel_sum(rgb: np.ndarray) -> np.ndarray | None:
    """R + G + B of a uint8 crop (uint16, 0-765: three times the grey level, exactly); None for
    other crops."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    total = arr[..., 0].astype(np.uint16)
    total += arr[..., 1]
    total += arr[..., 2]
    return total


def levels(rgb: np.ndarray) -> tuple[float, float]:
    """Robust (background, chromosome-core) grey levels of a dark-on-light crop."""
    total = _channel_sum(rgb)
    if total is not None:
        return _grey_levels(total, np.float32(3))
    return _grey_levels(_to_rgb_float(rgb).mean(axis=2), 1.0)


def _grey_levels(g: np.ndarray, scale) -> tuple[float, float]:
    """(background, core) of grey levels ``g / scale``: the border ring's median, and the median
    of the pixels darker than halfway from the 1st percentile to it. Integer ``g`` (channel
    sums) take their order statistics from one histogram."""
    h, w = g.shape
    ring = max(1, round(0.04 * min(h, w)))
    border = np.concatenate(
        [g[:ring].ravel(), g[-ring:].ravel(), g[:, :ring].ravel(), g[:, -ring:].ravel()]
    )
    background = float(np.median(border)) / scale
    if g.dtype.kind == "u":
        counts = np.bincount(g.ravel())
        quantile = functools.partial(_histogram_quantile, np.cumsum(counts))
        dark = quantile(0.01) / scale
    else:
        dark = float(np.percentile(g, 1)) / scale
    if background - dark < 4.0:
        return background, dark
    # chromosome pixels: darker than halfway between the darkest tail and the background;
    # the core level is their median, so the body of every chromosome renders solid
    halfway = (background + dark) / 2.0 * scale
    if g.dtype.kind == "u":
        below = int(np.ceil(halfway))  # values < halfway: 0 .. below - 1
        body = np.cumsum(counts[:below])
        core = _histogram_quantile(body, 0.5) / scale if body.size and body[-1] else dark
        return background, core
    body = g[g < halfway]
    core = float(np.median(body)) / scale if body.size else dark
    return background, core


def _histogram_quantile(cumulative: np.ndarray, q: float) -> float:
    """numpy's (linear) ``q`` quantile of the integers counted by ``cumulative`` (the cumulative
    counts of the values 0, 1, 2, ...)."""
    position = q * (cumulative[-1] - 1)
    low = int(np.floor(position))
    low_value, high_value = np.searchsorted(cumulative, [low, low + 1], side="right")
    return float(low_value + (position - low) * (high_value - low_value))


def contrast_map(rgb: np.ndarray) -> np.ndarray:
    """``t`` in [0, 1]: 0 at the chromosome core, 1 at (and near) the background level."""
    total = _channel_sum(rgb)
    if total is not None:
        g = total.astype(np.float32) / np.float32(3)
        background, core = _grey_levels(total, np.float32(3))
    else:
        g = _to_rgb_float(rgb).mean(axis=2).astype(np.float32)
        background, core = _grey_levels(g, 1.0)
    span = background - core
    if span < 4.0:  # flat crop: nothing to see
        return np.ones_like(g, dtype=np.float32)
    return np.clip((g - np.float32(core)) / np.float32(WHITE_AT * span), 0.0, 1.0)


def object_mask(t: np.ndarray) -> np.ndarray:
    """Chromosome mask of a contrast map: ``t < 0.5`` minus specks (< 10 % of the largest)."""
    from scipy import ndimage

    mask = t < 0.5
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= max(4.0, 0.1 * sizes.max())) + 1
        mask = np.isin(lab, keep)
    return mask


def canonical_window(rgb: np.ndarray, size: int = DEFAULT_SIZE) -> CanonicalWindow:
    """The square window of ``rgb`` that :func:`canonical_appearance` resamples."""
    t = contrast_map(rgb)
    return _window(t, size)


def _window(t: np.ndarray, size: int) -> CanonicalWindow:
    h, w = t.shape
    mask = object_mask(t)
    if not mask.any():
        side = float(max(h, w))
        return CanonicalWindow((h - side) / 2.0, (w - side) / 2.0, side, size)
    ys, xs = np.nonzero(mask)
    y0, y1 = ys.min(), ys.max() + 1
    x0, x1 = xs.min(), xs.max() + 1
    extent = float(max(y1 - y0, x1 - x0))
    side = max(extent / FILL, 4.0)
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    return CanonicalWindow(cy - side / 2.0, cx - side / 2.0, side, size)


def _axis_samples(n: int, start: float, side: float, size: int):
    """Where ``size`` pixel centres spread over ``[start, start + side)`` fall on an axis of ``n``
    pixels padded with one background pixel at each end: (left index, weight of the right)."""
    centres = start + (np.arange(size) + 0.5) * (side / size) + 0.5
    centres = np.clip(centres, 0.0, n + 1.0)
    left = np.minimum(centres.astype(np.intp), n)
    return left, (centres - left).astype(np.float32)


def _resample_window(t: np.ndarray, window: CanonicalWindow) -> np.ndarray:
    """Bilinear resampling of ``t`` inside ``window`` to ``size x size`` (1 outside), smoothed
    first when downsampling (no aliasing); one axis after the other, float32."""
    from scipy import ndimage

    size = window.size
    scale = window.side / size
    if scale > 1.0:
        t = ndimage.gaussian_filter(t, sigma=0.5 * (scale - 1.0) + 1e-6, mode="nearest")
    padded = np.pad(np.asarray(t, np.float32), 1, constant_values=1.0)
    top, fy = _axis_samples(t.shape[0], window.y0, window.side, size)
    left, fx = _axis_samples(t.shape[1], window.x0, window.side, size)
    rows, below = padded[top], padded[top + 1]
    below -= rows
    below *= fy[:, None]
    rows += below
    out, right = rows[:, left], rows[:, left + 1]
    right -= out
    right *= fx
    out += right
    return out


def canonical_contrast(rgb: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """The contrast map ``t`` of :func:`canonical_appearance` before its rendering: float32
    ``size x size`` in [0, 1] (0 chromosome core, 1 background), reframed the same way. The
    network input of a canonical crop is computed from it directly (an affine map per channel),
    at the network's input size."""
    t = contrast_map(rgb)
    out = _resample_window(t, _window(t, size))
    return np.clip(out, 0.0, 1.0, out=out)


def canonical_appearance(rgb: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Return ``rgb`` (uint8 HxWx3 crop, dark chromosome on lighter background), canonical look.

    Output: uint8 ``size x size x 3``, white background, chromosome core ``CORE_RGB``, the
    chromosome's longer bounding-box side = ``FILL * size``, centred. Idempotent up to resampling.
    """
    t_out = canonical_contrast(rgb, size).astype(np.float64)
    core = np.asarray(CORE_RGB, dtype=np.float64)
    out = core[None, None, :] + t_out[..., None] * (255.0 - core[None, None, :])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
