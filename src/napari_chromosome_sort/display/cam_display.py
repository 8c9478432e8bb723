"""How a Grad-CAM map is drawn: one palette that no class colour shares, the map kept on the
chromosomes, an overlay and a colour bar for PNGs. The viewer, the click panel and the command
line all draw with these."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.crops import as_rgb_uint8

#: Grad-CAM's colours from "ignored" to "mattered most": one blue hue from dark to light, which
#: no class colour shares (CIEDE2000 distance >= 15 to each, tests/test_widgets_predict.py), the
#: same in napari, the click panel and the command line's PNGs
CAM_COLOURS = ("#10104a", "#2f2fd0", "#7a7aff", "#e8e8ff")
#: below this share of its maximum a map is drawn transparent: the image shows through
CAM_FLOOR = 0.05


def cam_rgb(heatmap: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] (..., 3) of a [0, 1] heatmap in :data:`CAM_COLOURS`."""
    h = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    stops = np.array(
        [[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in CAM_COLOURS], np.float32
    )
    at = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(h, at, stops[:, i]) for i in range(3)], axis=-1).astype(np.float32)


def cam_colormap_rgba(n: int = 64, opacity: float = 0.85) -> np.ndarray:
    """(n, 4) RGBA controls of the map's colormap for a viewer: :data:`CAM_COLOURS`, transparent
    below :data:`CAM_FLOOR` (so the chromosome shows where the network did not look)."""
    t = np.linspace(0.0, 1.0, n)
    alpha = np.where(t < CAM_FLOOR, 0.0, opacity)
    return np.concatenate([cam_rgb(t), alpha[:, None]], axis=1).astype(np.float32)


def masked_to_objects(heatmap: np.ndarray, labels: np.ndarray, keep=None) -> np.ndarray:
    """A spread's map kept only on its objects' pixels (``keep``: those labels; None: every
    object): each chromosome shows its own map, no square crop window around it."""
    labels = np.asarray(labels)
    mask = labels > 0 if keep is None else np.isin(labels, np.asarray(list(keep)))
    return np.where(mask, np.asarray(heatmap, np.float32), 0.0).astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """uint8 RGB overlay of a [0, 1] heatmap (:data:`CAM_COLOURS`) on an image, for PNG export;
    below :data:`CAM_FLOOR` the image is left as it is."""
    rgb = as_rgb_uint8(image).astype(np.float32)
    h = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    weight = np.where(h < CAM_FLOOR, 0.0, alpha)[..., None]
    out = rgb * (1 - weight) + 255.0 * cam_rgb(h) * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def with_colour_bar(rgb: np.ndarray, width: int = 18) -> np.ndarray:
    """``rgb`` (uint8) with the map's colour bar at its right: low at the bottom, high at the
    top, labelled, so a PNG can be read on its own."""
    from PIL import Image, ImageDraw

    height = rgb.shape[0]
    margin = 90
    out = np.full((height, rgb.shape[1] + margin, 3), 255, np.uint8)
    out[:, : rgb.shape[1]] = rgb
    top, bottom = min(20, height // 4), max(height - 20, 3 * height // 4)
    ramp = np.linspace(1.0, 0.0, max(bottom - top, 1))
    left = rgb.shape[1] + 8
    out[top:bottom, left : left + width] = np.rint(255 * cam_rgb(ramp))[:, None, :]
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    draw.text((left, max(top - 14, 0)), "Grad-CAM", fill=(0, 0, 0))
    draw.text((left + width + 4, top), "high", fill=(0, 0, 0))
    draw.text((left + width + 4, bottom - 12), "low", fill=(0, 0, 0))
    return np.asarray(picture)
