"""Synthetic spreads and crop datasets: deterministic, truthful, with visible A/B/C differences."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.synthetic import make_crop_dataset, make_spread


def test_spread_is_deterministic_and_seed_dependent():
    a = make_spread(seed=1, shape=(160, 200))
    b = make_spread(seed=1, shape=(160, 200))
    c = make_spread(seed=2, shape=(160, 200))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.truth_labels, b.truth_labels)
    assert a.truth.equals(b.truth)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("modality", ["giemsa", "dapi"])
def test_spread_look_and_truth(modality):
    spread = make_spread(seed=0, n_chromosomes=30, modality=modality, shape=(512, 512))
    image, labels, truth = spread.image, spread.truth_labels, spread.truth
    assert image.dtype == np.uint8 and labels.dtype == np.int32
    assert labels.shape == (512, 512)
    if modality == "giemsa":
        assert image.shape == (512, 512, 3)
        bg = image[labels == 0].mean(axis=0)
        fg = image[np.isin(labels, truth.label[truth.kind == "chromosome"])].mean(axis=0)
        assert (fg < bg - 40).all()  # dark on light
        assert fg[2] > fg[1]  # purple-ish: more blue than green
    else:
        assert image.ndim == 2
        assert image[labels > 0].mean() > image[labels == 0].mean() + 80  # bright on dark
    assert list(truth.columns)[:3] == ["label", "kind", "cls"]
    assert set(truth.kind) == {"chromosome", "nucleus", "debris", "cluster"}
    assert set(truth.cls[truth.kind == "chromosome"]) <= {"A", "B", "C"}
    assert (truth.cls[truth.kind != "chromosome"] == "").all()
    assert (truth.kind == "chromosome").sum() >= 25
    for _, row in truth.iterrows():
        ys, xs = np.nonzero(labels == row.label)
        assert (row.bbox_y0, row.bbox_x0, row.bbox_y1, row.bbox_x1) == (
            ys.min(),
            xs.min(),
            ys.max() + 1,
            xs.max() + 1,
        )
    nuclei = truth[truth.kind == "nucleus"]
    areas = np.bincount(labels.ravel())
    chrom_med = np.median(areas[truth.label[truth.kind == "chromosome"]])
    assert (areas[nuclei.label] > 10 * chrom_med).all()


def test_chromatid_arrangement_per_class():
    """C = two separate blobs, A = one blob; B = one blob that is less solid than A."""
    pieces = {}
    for cls in ("A", "B", "C"):
        spread = make_spread(
            seed=3, n_chromosomes=15, classes=(cls,), n_nuclei=0, n_debris=0, n_clusters=0
        )
        counts = [ndi.label(spread.truth_labels == lab)[1] for lab in spread.truth.label]
        pieces[cls] = counts
    assert all(n == 1 for n in pieces["A"])
    assert all(n == 1 for n in pieces["B"])
    assert all(n == 2 for n in pieces["C"])


def test_bad_modality_and_class():
    with pytest.raises(ChromosortError):
        make_spread(modality="brightfield")
    with pytest.raises(ChromosortError):
        make_spread(classes=("Z",))


def test_crop_dataset(tmp_path):
    root = make_crop_dataset(tmp_path / "crops", n_per_class=6, seed=0, size=64)
    for cls in ("A", "B", "C"):
        files = sorted((root / cls).glob("*.png"))
        assert len(files) == 6
        img = np.asarray(Image.open(files[0]))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert np.median(img) > 200  # white background
        assert img.min() < 150  # dark chromosome
    again = make_crop_dataset(tmp_path / "again", n_per_class=6, seed=0, size=64)
    a = np.asarray(Image.open(root / "B" / "B_0003.png"))
    b = np.asarray(Image.open(again / "B" / "B_0003.png"))
    np.testing.assert_array_equal(a, b)
    only = make_crop_dataset(tmp_path / "two", n_per_class=2, classes=("A", "C"), size=48)
    assert sorted(p.name for p in only.iterdir()) == ["A", "C"]


def test_crop_classes_are_separable(tmp_path):
    """A simple shape feature already tells C (two blobs) from A (one solid blob)."""
    root = make_crop_dataset(tmp_path, n_per_class=15, seed=1, size=64)
    feats = {}
    for cls in ("A", "B", "C"):
        values = []
        for path in sorted((root / cls).glob("*.png")):
            grey = np.asarray(Image.open(path).convert("L")).astype(float)
            mask = grey < 170
            n = ndi.label(mask)[1]
            values.append(n)
        feats[cls] = np.array(values)
    assert (feats["C"] >= 2).mean() >= 0.8
    assert (feats["A"] == 1).mean() >= 0.8
    assert (feats["B"] == 1).mean() >= 0.8
