"""Grad-CAM: mass on the chromosome, maps aligned with the spread."""

from __future__ import annotations

import glob

import numpy as np
import pytest
from scipy import ndimage

from napari_chromosome_sort.classification.gradcam import gradcam, overlay, spread_gradcam
from napari_chromosome_sort.crops import Crop, CropGeometry


@pytest.mark.slow
def test_published_model_gradcam_mass_on_chromosome(ikemoto_model_file, wt_crops_dir):
    from PIL import Image

    from napari_chromosome_sort.classification.models.model_io import import_state_dict

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

    from napari_chromosome_sort.classification.models.model_io import import_state_dict

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


# --------------------------------------------------------------------------- multi-layer Grad-CAM


def _pooled_classifier(backbone_name: str, weights="random", size: int = 64, seed: int = 0):
    """A pooled-head classifier with a random head (no training, no network)."""
    import torch

    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        PooledHead,
    )

    torch.manual_seed(seed)
    backbone = build_backbone(backbone_name, weights=weights)
    head = PooledHead(backbone.feature_dim, 3)
    with torch.no_grad():
        head.mu.uniform_(0.0, 1.0)
        head.sigma.uniform_(0.5, 2.0)
    prep = Preprocessing(size=size, appearance="canonical", geometry="pad")
    return ChromosomeClassifier(backbone, head, ["A", "B", "C"], prep).eval()


def _keep_columns(model, feature_set: str) -> None:
    """Zero the head's weights outside ``feature_set`` (e.g. "last": last tap only)."""
    import torch

    from napari_chromosome_sort.classification.models.backbones import feature_columns

    keep = torch.zeros(model.head.in_dim, dtype=torch.bool)
    keep[feature_columns(model.backbone_name, feature_set)] = True
    with torch.no_grad():
        model.head.net.weight[:, ~keep] = 0.0


def _synthetic_crop(seed: int = 0, size: int = 48) -> np.ndarray:
    from napari_chromosome_sort.synthetic import make_crop

    return make_crop("B", np.random.default_rng(seed), size)


@pytest.mark.parametrize("backbone", ["squeezenet1_1", "resnet18"])
def test_multilayer_equals_classic_for_a_last_layer_head(backbone):
    model = _pooled_classifier(backbone)
    crop = _synthetic_crop()
    full_head = gradcam(model, crop, class_index=1, reference="zero")
    _keep_columns(model, "last")
    for reference in ("zero", "blank"):
        multi = gradcam(model, crop, class_index=1, layers="head", reference=reference)
        classic = gradcam(model, crop, class_index=1, layers="last", reference=reference)
        assert multi.shape == crop.shape[:2] and multi.dtype == np.float32
        assert np.allclose(multi, classic, atol=1e-5)
    # layers="last" defaults to the classic map (raw activations, no reference)
    assert np.array_equal(
        gradcam(model, crop, class_index=1, layers="last"),
        gradcam(model, crop, class_index=1, layers="last", reference="zero"),
    )
    # the head's other layers do change the map
    assert not np.allclose(full_head, gradcam(model, crop, class_index=1, reference="zero"))


@pytest.mark.parametrize("backbone", ["squeezenet1_1", "resnet18"])
def test_multilayer_terms_add_up_to_the_score(backbone):
    """Average-pooled head: every layer's term has mean c_l / N_L, so the terms add up to the
    class logit minus its constant part ("zero") or minus the blank crop's logit ("blank")."""
    import torch

    from napari_chromosome_sort.classification.gradcam import _head_layer_terms, blank_like
    from napari_chromosome_sort.classification.models.backbones import pool_taps

    model = _pooled_classifier(backbone, seed=1)
    _keep_columns(model, "all_avg")
    x = model.preprocess([_synthetic_crop(1)])
    taps = model.backbone.forward_taps(x)
    cells = taps[-1].shape[-2] * taps[-1].shape[-1]
    with torch.no_grad():
        logits = model(x)[0]
        blank_logits = model(blank_like(x))[0]
        w = model.head.net.weight / model.head.sigma
        constant = model.head.net.bias + model.head.logit_shift - w @ model.head.mu
    for c in range(3):
        terms, cls = _head_layer_terms(model, x, [c], "zero")
        assert cls == [c] and len(terms) == len(model.backbone.taps)
        total = sum(float(t.mean()) for t in terms) * cells
        assert total == pytest.approx(float(logits[c] - constant[c]), rel=1e-3, abs=1e-3)
        terms, _ = _head_layer_terms(model, x, [c], "blank")
        total = sum(float(t.mean()) for t in terms) * cells
        assert total == pytest.approx(float(logits[c] - blank_logits[c]), rel=1e-3, abs=1e-3)
    # pool_taps layout: the last features are the last tap's max pooling
    assert pool_taps(taps).shape[1] == model.head.in_dim


def test_resnet18_multilayer_gradcam_and_spread():
    model = _pooled_classifier("resnet18")
    crop = _synthetic_crop(2)
    heat = gradcam(model, crop)
    assert heat.shape == crop.shape[:2] and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    geometry = CropGeometry(10, 20, 10 + crop.shape[0], 20 + crop.shape[1], crop.shape[0], (80, 90))
    full = spread_gradcam(model, [Crop(crop, geometry, 1, "x")], [0], layers="last")
    assert full.shape == (80, 90) and full[:10].max() == 0
    assert np.allclose(
        full[10 : 10 + crop.shape[0], 20 : 20 + crop.shape[1]],
        gradcam(model, crop, 0, layers="last"),
        atol=1e-5,
    )


def test_gradcam_rejects_unknown_options():
    from napari_chromosome_sort.errors import ChromosortError

    model = _pooled_classifier("squeezenet1_1")
    with pytest.raises(ChromosortError, match="layers"):
        gradcam(model, _synthetic_crop(), layers="all")
    with pytest.raises(ChromosortError, match="reference"):
        gradcam(model, _synthetic_crop(), reference="mean")


@pytest.mark.slow
def test_multilayer_gradcam_mass_on_chromosome():
    """The bundled WT model on the bundled real spread: the default (multi-layer, blank
    reference) map of each kept chromosome sits on it, far more than the classic last-layer map
    (docs/validation.md, Grad-CAM: 0.48 vs 0.27, the object covering about a fifth of the
    window)."""
    from importlib.resources import files

    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.segmentation import segment_spread

    data = files("napari_chromosome_sort") / "data"
    model = load_model(str(data / "wt_squeezenet1_1.safetensors"))
    image = read_image(str(data / "giemsa_ddx11_spread_3.png"))
    segmentation = segment_spread(image)
    crops = crop_chromosomes(image, segmentation)
    assert len(crops) >= 40
    mass, classic, area = [], [], []
    for crop in crops:
        mask = segmentation.labels == crop.label
        heat = crop.geometry.to_image(gradcam(model, crop.pixels))
        last = crop.geometry.to_image(gradcam(model, crop.pixels, layers="last"))
        mass.append(heat[mask].sum() / heat.sum())
        classic.append(last[mask].sum() / last.sum())
        area.append(mask[heat > 0].mean())
    assert np.median(mass) > 0.4
    assert np.median(mass) > 2.0 * np.median(area)
    assert np.median(mass) > np.median(classic) + 0.15


@pytest.mark.parametrize(("layers", "reference"), [("head", None), ("last", "blank")])
def test_batched_gradcam_equals_one_crop_at_a_time(layers, reference):
    """Batches (blank reference once per background colour) give each crop's own map."""
    from napari_chromosome_sort.classification.gradcam import gradcams

    model = _pooled_classifier("squeezenet1_1")
    crops = [_synthetic_crop(seed, 40 + 6 * seed) for seed in range(5)]
    crops[1] = (crops[1] * 0.8).astype(np.uint8)  # a grey background: a second blank colour
    classes = [1, None, 0, None, 2]
    batched = gradcams(model, crops, classes, layers=layers, reference=reference, batch_size=3)
    assert len(batched) == len(crops)
    for crop, cls, heat in zip(crops, classes, batched, strict=True):
        alone = gradcam(model, crop, cls, layers=layers, reference=reference)
        assert heat.shape == crop.shape[:2] and heat.max() == pytest.approx(1.0)
        assert np.allclose(heat, alone, atol=1e-4)  # float32 noise of batched convolutions
    assert not np.allclose(batched[0], gradcam(model, crops[0], 2, layers=layers))


def test_cam_upsampling_equals_skimage_bilinear_resize():
    """The maps are upsampled as skimage's resize(order=1, mode="edge") would."""
    import torch
    import torch.nn.functional as F
    from skimage.transform import resize

    term = np.random.default_rng(0).random((13, 13)).astype(np.float32)
    ours = F.interpolate(torch.from_numpy(term)[None, None], size=(96, 96), mode="bilinear")
    theirs = resize(term, (96, 96), order=1, mode="edge", preserve_range=True)
    assert np.allclose(ours[0, 0].numpy(), theirs, atol=1e-5)


def test_upsampling_equals_torch_bilinear():
    """Grad-CAM's numpy upsampling is torch's bilinear interpolation (half-pixel centres)."""
    import torch
    import torch.nn.functional as F

    from napari_chromosome_sort.classification.gradcam import _upsample

    maps = np.random.default_rng(0).normal(size=(3, 13, 7)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(maps)[:, None], size=(96, 96), mode="bilinear")
    np.testing.assert_allclose(_upsample(maps, 96), expected[:, 0].numpy(), atol=1e-5)


def test_blank_terms_run_once_per_background_colour():
    """The blank reference's terms come from one forward per background colour not seen
    before, in each crop's order; a second batch with the same colours runs nothing."""
    from napari_chromosome_sort.classification.gradcam import _blank_terms

    calls = []

    def run(x):
        calls.append(len(x))
        mean = x.mean(axis=(1, 2, 3))
        return [mean, mean[:, None, None, None] * np.ones((1, 2, 3, 3), np.float32)]

    colours = np.array([[0.5, 0.5, 0.5], [-1.0, 0.0, 1.0], [0.5, 0.5, 0.5]], np.float32)
    (terms,) = _blank_terms(run, colours, size=8)
    assert calls == [2] and terms.shape == (3, 2, 3, 3)
    np.testing.assert_allclose(terms[:, 0, 0, 0], [0.5, 0.0, 0.5], atol=1e-6)
    (again,) = _blank_terms(run, colours[::-1], size=8)
    assert calls == [2]
    np.testing.assert_array_equal(again, terms[::-1])
