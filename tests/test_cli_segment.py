"""``chromosort segment``: outputs per image, options, and errors."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_chromosome_sort.cli import main
from napari_chromosome_sort.segmentation import OBJECT_COLUMNS
from napari_chromosome_sort.synthetic import make_spread


@pytest.fixture(scope="module")
def spread_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spreads")
    giemsa = make_spread(seed=21, n_chromosomes=15, shape=(512, 512), n_nuclei=1)
    dapi = make_spread(seed=22, n_chromosomes=15, shape=(512, 512), modality="dapi", n_nuclei=1)
    assert (giemsa.truth.kind == "nucleus").sum() == (dapi.truth.kind == "nucleus").sum() == 1
    Image.fromarray(giemsa.image).save(folder / "g1.png")
    tifffile.imwrite(folder / "d1.tif", dapi.image)
    return folder


def test_segment_writes_labels_objects_crops(spread_files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["segment", str(spread_files / "g1.png"), str(spread_files / "d1.tif"),
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    for stem in ("g1", "d1"):
        labels = tifffile.imread(out / stem / "labels.tif")
        assert labels.dtype == np.int32 and labels.shape == (512, 512)
        objects = pd.read_csv(out / stem / "objects.csv", keep_default_na=False)
        assert list(objects.columns) == OBJECT_COLUMNS
        assert set(np.unique(labels)) - {0} == set(objects.label)
        kept = objects[objects.status == "chromosome"]
        assert len(kept) >= 10
        crops = sorted((out / stem / "crops").glob("*.png"))
        assert {p.name for p in crops} == {f"{stem}_{lab}.png" for lab in kept.label}
        crop = np.asarray(Image.open(crops[0]))
        assert crop.ndim == 3 and crop.shape[2] == 3
        assert (objects.status == "nucleus").sum() == 1
    err = capsys.readouterr().err
    # each spread's summary is a line of its own, not glued to the progress bar
    lines = re.split(r"[\r\n]", err)
    assert {"g1.png", "d1.tif"} <= {line.split(": chromosome ")[0] for line in lines}, err


def test_segment_denoises_the_crops_of_a_noisy_spread(tmp_path, capsys):
    """A noisy spread's crops are written denoised, like the spread segmentation saw."""
    from napari_chromosome_sort.crops import crop_object

    spread = make_spread(seed=23, n_chromosomes=12, n_nuclei=0, n_debris=0, n_clusters=0)
    rng = np.random.default_rng(0)
    noisy = np.clip(spread.image + rng.normal(0, 25, spread.image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    assert main(["segment", str(tmp_path / "noisy.png"), "--out", str(tmp_path)]) == 0
    assert "denoised" in capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "noisy" / "labels.tif")
    objects = pd.read_csv(tmp_path / "noisy" / "objects.csv", keep_default_na=False)
    label = int(objects.label[objects.status == "chromosome"].iloc[0])
    written = np.asarray(Image.open(tmp_path / "noisy" / "crops" / f"noisy_{label}.png"))
    raw = crop_object(noisy, labels, label).pixels
    clean = crop_object(spread.image, labels, label).pixels  # the same window without noise
    assert written.shape == raw.shape == clean.shape
    error = np.abs(written.astype(float) - clean).mean()
    assert error < 0.5 * np.abs(raw.astype(float) - clean).mean()


def test_segment_options(spread_files, tmp_path):
    out = tmp_path / "o"
    image = str(spread_files / "d1.tif")
    assert main(["segment", image, "--out", str(out / "a"), "--no-crops", "--quiet"]) == 0
    assert not (out / "a" / "d1" / "crops").exists()
    assert main(["segment", image, "--out", str(out / "b"), "--polarity", "bright_on_dark",
                 "--quiet", "--no-crops"]) == 0  # fmt: skip
    auto = pd.read_csv(out / "a" / "d1" / "objects.csv")
    forced = pd.read_csv(out / "b" / "d1" / "objects.csv")
    pd.testing.assert_frame_equal(auto, forced)
    assert main(["segment", image, "--out", str(out / "d"), "--no-split", "--no-pairing",
                 "--no-band-join", "--threshold", "0.3", "--quiet", "--no-crops"]) == 0  # fmt: skip
    plain = pd.read_csv(out / "d" / "d1" / "objects.csv")
    assert not plain.reason.str.contains("joined|split from|chromatids grouped").any()
    assert main(["segment", image, "--out", str(out / "e"), "--crossing-score", "off",
                 "--quiet", "--no-crops"]) == 0  # fmt: skip
    no_score = pd.read_csv(out / "e" / "d1" / "objects.csv")
    assert not no_score.reason.str.startswith("crossing score").any()
    assert len(no_score) == len(auto)
    assert main(["segment", image, "--out", str(out / "c"), "--polarity", "dark_on_light",
                 "--quiet", "--no-crops"]) == 0  # fmt: skip
    wrong = pd.read_csv(out / "c" / "d1" / "objects.csv")
    assert not wrong.equals(auto)


def test_segment_bad_input(tmp_path, capsys):
    rc = main(["segment", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("chromosort segment: error:") and "not found" in err[-1]
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert main(["segment", str(junk), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "cannot read" in capsys.readouterr().err
    for folder, suffix in (("x", ".png"), ("y", ".tif")):  # one stem, two images
        (tmp_path / folder).mkdir()
        Image.fromarray(make_spread(seed=1, n_chromosomes=3).image).save(
            tmp_path / folder / f"s{suffix}"
        )
    same = [str(tmp_path / "x" / "s.png"), str(tmp_path / "y" / "s.tif")]
    assert main(["segment", *same, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "s.png and " in err and "s.tif would both write" in err and str(tmp_path / "o" / "s") in err
    )
    grey_bool = tmp_path / "b.tif"
    tifffile.imwrite(grey_bool, np.zeros((16, 16), np.complex64))
    assert main(["segment", str(grey_bool), "--out", str(tmp_path / "o"), "--quiet"]) == 2


def test_segment_real_giemsa(giemsa_dir, tmp_path):
    image = giemsa_dir / "images" / "1.png"
    assert main(["segment", str(image), "--out", str(tmp_path), "--quiet"]) == 0
    objects = pd.read_csv(tmp_path / "1" / "objects.csv", keep_default_na=False)
    assert (objects.status == "chromosome").sum() >= 40
    assert (objects.status == "nucleus").sum() >= 5
    assert (
        len(list((tmp_path / "1" / "crops").glob("*.png")))
        == (objects.status == "chromosome").sum()
    )


def test_the_learned_step_switches_default_to_the_segmentation_defaults():
    import argparse

    from napari_chromosome_sort.cli.segment import LEARNED_STEP_DEFAULTS, add_arguments
    from napari_chromosome_sort.segmentation import SegmentationParams

    defaults = SegmentationParams()
    assert {k: getattr(defaults, k) for k in LEARNED_STEP_DEFAULTS} == LEARNED_STEP_DEFAULTS
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["x.png", "--out", "o", "--junction-score", "off"])
    assert (args.crossing_score, args.pixel_classes, args.junction_score) == ("off", "auto", "off")
