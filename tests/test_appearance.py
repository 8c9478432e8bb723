"""canonical_appearance: published crops and raw spread crops end with the same look."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.classification.appearance import (
    CORE_RGB,
    FILL,
    canonical_appearance,
    canonical_window,
    levels,
    object_mask,
)


def _stats(rgb):
    """(background grey, chromosome-core grey, object extent / crop side)."""
    g = rgb.astype(float).mean(2)
    background, core = levels(rgb)
    t = np.clip((g - core) / max(background - core, 1e-6), 0, 1)
    mask = object_mask(t)
    ys, xs = np.nonzero(mask)
    extent = max(np.ptp(ys) + 1, np.ptp(xs) + 1) / max(g.shape)
    return background, core, extent


def _synthetic(background, core, size, length, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), background, float)
    c = size // 2
    img[c - length // 2 : c + length // 2, c - 3 : c + 3] = core
    img += rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_synthetic_domains_converge():
    published = _synthetic(255, 80, 90, 60)  # white background, big
    raw = _synthetic(100, 40, 70, 24, seed=1)  # grey, low contrast, small
    a, b = canonical_appearance(published), canonical_appearance(raw)
    assert a.shape == b.shape == (128, 128, 3) and a.dtype == np.uint8
    for out in (a, b):
        bg, core, extent = _stats(out)
        assert bg == 255
        assert abs(core - np.mean(CORE_RGB)) < 12
        assert abs(extent - FILL) < 0.06


def test_flat_crop_is_white_and_window_is_square():
    flat = np.full((30, 40, 3), 120, np.uint8)
    assert (canonical_appearance(flat) == 255).all()
    w = canonical_window(_synthetic(100, 40, 70, 24))
    assert abs(w.side * FILL - 24) < 3


def test_real_published_and_spread_crops(wt_crops_dir, giemsa_dir):
    from PIL import Image

    published = [
        np.asarray(Image.open(p).convert("RGB"))
        for p in sorted((wt_crops_dir / "a").glob("*.jpg"))[:8]
    ]
    image = np.asarray(Image.open(giemsa_dir / "images" / "1.png").convert("RGB"))
    h, w = image.shape[:2]
    raw = []
    for row in np.loadtxt(giemsa_dir / "labels" / "1.txt", ndmin=2)[:8]:
        _, cx, cy, bw, bh = row
        side = int(max(bw * w, bh * h) * 1.4)
        y0, x0 = int(cy * h - side / 2), int(cx * w - side / 2)
        raw.append(image[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side])
    before = np.array([_stats(c) for c in published]), np.array([_stats(c) for c in raw])
    assert before[0][:, 0].mean() - before[1][:, 0].mean() > 100  # white vs grey background
    after = [np.array([_stats(canonical_appearance(c)) for c in s]) for s in (published, raw)]
    for col, tol in ((0, 2), (1, 15), (2, 0.08)):
        assert abs(np.median(after[0][:, col]) - np.median(after[1][:, col])) < tol


def test_network_input_is_the_canonical_rendering_normalised():
    """A canonical crop's network input is the canonical rendering at the input size, normalised
    (computed without the 8-bit image: equal up to that image's rounding)."""
    from napari_chromosome_sort.classification.features import (
        Preprocessing,
        _normalisation_table,
        prepare_image,
    )

    crop = _synthetic(110, 40, 90, 50, seed=2)[:, 10:80]
    prep = Preprocessing(size=160, geometry="pad")
    rendered = canonical_appearance(crop, 160)
    table = _normalisation_table(prep.mean, prep.std)
    expected = np.stack([table[c][rendered[..., c]] for c in range(3)])
    got = prepare_image(crop, prep)
    assert got.shape == (3, 160, 160) and got.dtype == np.float32
    step = 0.5 / 255 / min(prep.std)  # half a grey level
    np.testing.assert_allclose(got, expected, atol=step + 1e-6)
    assert np.ptp(got) > 1.0  # a chromosome on a white background, not a blank
