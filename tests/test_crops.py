"""Crop recipe: blanking, square padding, exact geometry round trip, paper enhancement."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.crops import (
    CropGeometry,
    crop_object,
    enhance,
    normalise_channels,
    paper_enhance,
)
from napari_chromosome_sort.errors import ChromosortError


def _scene():
    image = np.full((120, 160, 3), 200, np.uint8)
    labels = np.zeros((120, 160), np.int32)
    image[40:70, 50:60] = 40  # object 1: 30 x 10
    labels[40:70, 50:60] = 1
    image[45:55, 63:70] = 60  # object 2: a neighbour inside object 1's window
    labels[45:55, 63:70] = 2
    image[2:12, 140:158] = 50  # object 3: at the top-right edge
    labels[2:12, 140:158] = 3
    return image, labels


def test_crop_blanks_other_objects_and_is_square():
    image, labels = _scene()
    crop = crop_object(image, labels, 1, margin=0.25, polarity="dark_on_light")
    g = crop.geometry
    assert crop.pixels.shape == (g.side, g.side, 3) and g.y1 - g.y0 == g.x1 - g.x0
    assert g.side == round(30 * 1.5)
    own = crop.pixels[..., 0] == 40
    assert own.sum() == 300  # the whole object is there
    assert not (crop.pixels == 60).any()  # the neighbour is blanked to background
    assert (crop.pixels[~own] == 200).all()


def test_crop_pads_past_image_edge_with_background():
    image, labels = _scene()
    crop = crop_object(image, labels, 3, margin=0.3, polarity="dark_on_light")
    assert crop.geometry.y0 < 0 or crop.geometry.x1 > 160
    assert (crop.pixels[0, 0] == 200).all() and (crop.pixels[0, -1] == 200).all()
    assert (crop.pixels[..., 0] == 50).sum() == 180


def test_crop_resize_and_heatmap_round_trip():
    image, labels = _scene()
    for label in (1, 3):
        crop = crop_object(image, labels, label, margin=0.2, size=64, polarity="dark_on_light")
        g = crop.geometry
        assert crop.pixels.shape == (64, 64, 3)
        # a smooth synthetic map on the full image, seen through the crop and mapped back
        yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
        truth = np.sin(yy / 9.0) + np.cos(xx / 11.0) + 2.0
        back = g.to_image(g.from_image(truth))
        inside = np.zeros_like(truth, bool)
        inside[max(g.y0, 0) : g.y1, max(g.x0, 0) : g.x1] = True
        assert back.shape == truth.shape and back.dtype == np.float32
        assert np.all(back[~inside] == 0)
        from scipy import ndimage

        core = ndimage.binary_erosion(inside, iterations=3)  # away from the window/image edges
        assert np.abs(back[core] - truth[core]).max() < 0.05
        # native size: exact
        native = CropGeometry(g.y0, g.x0, g.y1, g.x1, g.side, g.image_shape)
        assert np.array_equal(native.to_image(native.from_image(truth))[inside], truth[inside])


def test_delta_heatmap_lands_on_the_object():
    image, labels = _scene()
    crop = crop_object(image, labels, 1, margin=0.2, size=48, polarity="dark_on_light")
    heat = np.zeros((48, 48), np.float32)
    heat[20:28, 20:28] = 1.0  # centre of the crop
    full = crop.geometry.to_image(heat)
    cy, cx = np.argwhere(full == full.max()).mean(0)
    assert abs(cy - 55) < 3 and abs(cx - 55) < 3
    out = np.full(full.shape, 0.25, np.float32)
    crop.geometry.paste_max(heat, out)
    np.testing.assert_array_equal(out, np.maximum(full, 0.25))


def test_crops_of_a_noisy_spread_are_denoised():
    """A spread that segmentation denoised gives denoised crops (the classifier was trained on
    clean ones); a clean spread's crops are left exactly as they were."""
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.segmentation import segment_spread
    from napari_chromosome_sort.synthetic import make_spread

    spread = make_spread(seed=2, n_chromosomes=15, n_nuclei=0, n_debris=0, n_clusters=0)
    rng = np.random.default_rng(0)
    noisy = np.clip(spread.image + rng.normal(0, 25, spread.image.shape), 0, 255).astype(np.uint8)
    seg = segment_spread(noisy)
    assert seg.stats["denoised"]
    crops = crop_chromosomes(noisy, seg, margin=0.3)
    raw = crop_chromosomes(noisy, seg, margin=0.3, denoise=False)
    assert len(crops) == len(raw) >= 12

    # the same windows cut from the noise-free image: denoised crops are much closer to them
    truth = crop_chromosomes(spread.image, seg, margin=0.3, denoise=False)

    def distance(a, b):
        return [np.abs(x.pixels.astype(float) - y.pixels).mean() for x, y in zip(a, b, strict=True)]

    assert np.median(distance(crops, truth)) < 0.5 * np.median(distance(raw, truth))
    # the chromosome stays as dark as in the raw crop (denoising keeps its contrast)
    for crop, plain in zip(crops, raw, strict=True):
        dark = plain.pixels.mean(axis=-1) < 120
        assert abs(crop.pixels[dark].mean() - plain.pixels[dark].mean()) < 15
    clean = segment_spread(spread.image)
    assert not clean.stats["denoised"]
    same = crop_chromosomes(spread.image, clean, margin=0.3)
    plain = crop_chromosomes(spread.image, clean, margin=0.3, denoise=False)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(same, plain, strict=True))


def test_bright_on_dark_is_inverted():
    image, labels = _scene()
    crop = crop_object(255 - image, labels, 1, polarity="bright_on_dark")
    assert crop.pixels[0, 0, 0] == 200 and crop.pixels.min() == 40


def test_crop_errors():
    image, labels = _scene()
    with pytest.raises(ChromosortError):
        crop_object(image, labels, 9)
    with pytest.raises(ChromosortError):
        crop_object(image, labels[:10], 1)


def test_paper_enhancement_and_normalisation():
    rng = np.random.default_rng(0)
    raw = np.full((60, 60, 3), 100, np.uint8) + rng.integers(0, 6, (60, 60, 3)).astype(np.uint8)
    raw[20:40, 25:35] = 40
    bright = paper_enhance(raw)
    assert bright[0, 0].min() == 255  # background -> white: clip(3*100 + 80) = 255
    assert bright[30, 30, 0] == round(255 * (200 / 255) ** 3)  # 3*40+80 = 200, gamma 3
    out = enhance(raw)
    for c in range(3):
        assert abs(out[..., c].mean() - 64) < 1.5 and abs(out[..., c].std() - 16) < 1.5
    flat = normalise_channels(np.full((8, 8, 3), 7, np.uint8))
    assert (flat == 64).all()
