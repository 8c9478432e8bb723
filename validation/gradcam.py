"""Focus of Grad-CAM maps on a real spread: the share of each crop's map on its chromosome.

One Giemsa spread is segmented, the Grad-CAM of every kept crop (predicted class) pasted back
through ``CropGeometry``; over the crops, the median share of the map's mass that falls on the
object's own mask, beside the median share of the mapped window that the object covers (what a
map without any focus would get).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import giemsa_dir


def gradcam_mass(
    model_path: Path, spread: str = "3.png", modes: tuple[str, ...] = ("head", "last")
) -> pd.DataFrame:
    """One row per mode ``LAYERS[:REFERENCE]`` of ``gradcam()``."""
    from napari_chromosome_sort.classification.gradcam import gradcam
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.segmentation import segment_spread

    model = load_model(model_path)
    image = read_image(giemsa_dir() / "images" / spread)
    segmentation = segment_spread(image)
    crops = crop_chromosomes(image, segmentation)
    rows = []
    for mode in modes:
        layers, _, reference = mode.partition(":")
        mass, area = [], []
        for crop in crops:
            heat = gradcam(model, crop.pixels, layers=layers, reference=reference or None)
            full = crop.geometry.to_image(heat)
            mask = segmentation.labels == crop.label
            if full.sum() > 0:
                mass.append(full[mask].sum() / full.sum())
                area.append(mask[full > 0].mean())
        rows.append(
            {
                "model": Path(model_path).name,
                "spread": spread,
                "mode": mode,
                "crops": len(mass),
                "median_mass_on_object": float(np.median(mass)),
                "mean_mass_on_object": float(np.mean(mass)),
                "object_share_of_window": float(np.median(area)),
            }
        )
    return pd.DataFrame(rows)
