"""Grad-CAM: mass on the chromosome, maps aligned with the spread."""

from __future__ import annotations

import glob

import numpy as np
from scipy import ndimage

from napari_chromosome_sort.crops import Crop, CropGeometry
from napari_chromosome_sort.gradcam import gradcam, overlay, spread_gradcam


def test_published_model_gradcam_mass_on_chromosome(ikemoto_model_file, wt_crops_dir):
    from PIL import Image

    from napari_chromosome_sort.model_io import import_state_dict

    model = import_state_dict(ikemoto_model_file, ["A", "B", "C"])
    files = sorted(glob.glob(str(wt_crops_dir / "*" / "*.jpg")))[::120]
    mass, area = [], []
    for f in files:
        crop = np.asarray(Image.open(f).convert("RGB"))
        chromosome = crop.mean(2) < 200
        chromosome = ndimage.binary_dilation(chromosome, iterations=max(2, crop.shape[0] // 20))
        heat = gradcam(model, crop)
        assert heat.shape == crop.shape[:2] and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        mass.append(heat[chromosome].sum() / heat.sum())
        area.append(chromosome.mean())
    assert np.mean(mass) > 0.55
    assert np.mean(mass) > 1.5 * np.mean(area)


def test_spread_gradcam_is_pasted_at_the_crop_window(ikemoto_model_file, wt_crops_dir):
    from PIL import Image

    from napari_chromosome_sort.model_io import import_state_dict

    model = import_state_dict(ikemoto_model_file, ["A", "B", "C"])
    pixels = np.asarray(Image.open(sorted(wt_crops_dir.glob("a/*.jpg"))[0]).convert("RGB"))
    side = max(pixels.shape[:2])
    square = np.full((side, side, 3), 255, np.uint8)
    square[: pixels.shape[0], : pixels.shape[1]] = pixels
    geometry = CropGeometry(50, 70, 50 + side, 70 + side, side, (300, 400))
    full = spread_gradcam(model, [Crop(square, geometry, 1, "x")])
    assert full.shape == (300, 400) and full.dtype == np.float32
    assert full[:50].max() == 0 and full[:, :70].max() == 0
    assert np.allclose(full[50 : 50 + side, 70 : 70 + side], gradcam(model, square), atol=1e-5)
    assert overlay(np.zeros((300, 400, 3), np.uint8), full).shape == (300, 400, 3)
