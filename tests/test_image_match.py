"""A model records what its training images were like; Predict warns when a spread differs
(the bundled model: Giemsa bright-field, dark on light)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_chromosome_sort import synthetic
from napari_chromosome_sort.classification.image_match import (
    describe_training_images,
    image_warnings,
    record_training_images,
    training_images_of,
)
from napari_chromosome_sort.errors import ChromosortError


@pytest.fixture(scope="module")
def bundled_model():
    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort.classification.models.model_io import load_model

    return load_model(bundled_model_path())


def _spread(modality: str) -> np.ndarray:
    return synthetic.make_spread(
        seed=3, modality=modality, shape=(256, 256), n_chromosomes=10, n_nuclei=0
    ).image


def test_the_bundled_model_is_read_as_giemsa_bright_field(bundled_model):
    assert "training_images" not in bundled_model.metadata
    record = training_images_of(bundled_model)
    assert record["polarity"] == "dark_on_light" and record["stain"] == "Giemsa"


def test_a_dapi_like_spread_warns_and_a_giemsa_like_one_does_not(bundled_model):
    from napari_chromosome_sort.classification.predict import predict_spread

    dapi = predict_spread(bundled_model, _spread("dapi"), tta=False)
    assert len(dapi.warnings) == 1
    assert "bright chromosomes on a dark background" in dapi.warnings[0]
    assert "Giemsa" in dapi.warnings[0]
    giemsa = predict_spread(bundled_model, _spread("giemsa"), tta=False)
    assert giemsa.warnings == []


def test_training_records_its_crops_and_the_file_keeps_them(tmp_path, tiny_model):
    from napari_chromosome_sort.classification.models.model_io import (
        load_model,
        read_metadata,
        save_model,
    )
    from napari_chromosome_sort.files.io import read_image

    folder = synthetic.make_crop_dataset(tmp_path / "crops", n_per_class=4, size=40)
    crops = [read_image(p) for p in sorted(folder.rglob("*.png"))]
    model = load_model(tiny_model)
    record = record_training_images(model, [255 - c for c in crops])  # bright on dark
    assert record == {"stain": "DAPI", "polarity": "bright_on_dark", "crop_size": 40}
    path = save_model(model, tmp_path / "dapi.safetensors")
    assert read_metadata(path)["training_images"] == record
    # a DAPI-trained model warns on a Giemsa spread, not on a DAPI one
    again = load_model(path)
    assert image_warnings(again, _spread("giemsa"))
    assert not image_warnings(again, _spread("dapi"))
    assert describe_training_images([]) == {}
    # crops given as files, a reference set left out: the user's own crops are recorded
    files = sorted(folder.rglob("*.png"))
    dark = [255 - c for c in crops]
    mixed = record_training_images(model, [*files, *dark], reference=[False] * 12 + [True] * 12)
    assert mixed["polarity"] == "dark_on_light" and mixed["crop_size"] == 40


def test_crops_far_from_the_training_size_warn(tiny_model):
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.segmentation import segment_spread

    image = _spread("giemsa")
    crops = crop_chromosomes(image, segment_spread(image))
    model = load_model(tiny_model)
    side = int(np.median([max(c.pixels.shape[:2]) for c in crops]))
    model.metadata["training_images"] = {"polarity": "dark_on_light", "crop_size": side}
    assert image_warnings(model, image, crops=crops) == []
    model.metadata["training_images"]["crop_size"] = side * 3
    (warning,) = image_warnings(model, image, crops=crops)
    assert "px across" in warning


@pytest.mark.parametrize(
    "record, problem",
    [
        ({"polarity": "sideways"}, "polarity"),
        ({"crop_size": -3}, "crop size"),
        ({"stain": ["Giemsa"]}, "stain"),
        ("Giemsa", "JSON object"),
    ],
)
def test_a_bad_record_is_refused_in_one_line(tmp_path, tiny_model, record, problem):
    from napari_chromosome_sort.classification.models.model_io import read_metadata
    from napari_chromosome_sort.classification.models.model_schema import check_metadata

    meta = read_metadata(tiny_model)
    meta["training_images"] = record
    with pytest.raises(ChromosortError, match=problem):
        check_metadata(json.loads(json.dumps(meta)))


def test_cli_predict_warns_on_a_dapi_like_spread(tmp_path, capsys):
    from PIL import Image

    from napari_chromosome_sort.cli import main

    Image.fromarray(_spread("dapi")).save(tmp_path / "dapi.png")
    Image.fromarray(_spread("giemsa")).save(tmp_path / "giemsa.png")
    main(["predict", str(tmp_path), "--spreads", "--no-tta", "--out", str(tmp_path / "c.csv")])
    err = capsys.readouterr().err
    assert "dapi.png: warning: this image has bright chromosomes" in err
    assert "giemsa.png: warning" not in err


def test_a_model_trained_on_the_plugins_dapi_crops_takes_dapi_spreads(tmp_path, capsys):
    """The plugin stores every crop dark on light; its crop files still say their spread was
    DAPI, so a model trained on them records DAPI: no warning on a DAPI spread, one on Giemsa."""
    from PIL import Image

    from napari_chromosome_sort.cli import main
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.files.io import detect_polarity, read_image
    from napari_chromosome_sort.segmentation import segment_spread

    dapi, giemsa = _spread("dapi"), _spread("giemsa")
    Image.fromarray(dapi).save(tmp_path / "dapi.png")
    Image.fromarray(giemsa).save(tmp_path / "giemsa.png")
    assert main(["segment", str(tmp_path / "dapi.png"), "--out", str(tmp_path / "seg")]) == 0
    written = sorted((tmp_path / "seg" / "dapi" / "crops").glob("*.png"))
    assert detect_polarity(read_image(written[0])) == "dark_on_light"  # the pixels cannot tell
    assert describe_training_images(written)["stain"] == "DAPI"
    # the Label widget's, import-labels' and the correction loop's store keeps it too
    dataset = CropDataset(tmp_path / "dataset", classes=("A", "B"))
    for n, crop in enumerate(crop_chromosomes(dapi, segment_spread(dapi))):
        dataset.add(crop.pixels, "AB"[n % 2], "dapi.png", crop.label, polarity=crop.polarity)
    assert describe_training_images(p for p, _ in dataset.items())["polarity"] == "bright_on_dark"
    model = tmp_path / "dapi.safetensors"
    train = ["train", str(tmp_path / "dataset"), "--out", str(model), "--weights", "random"]
    assert main([*train, "--input-size", "64", "--quiet", "--cache-dir", "none"]) == 0
    capsys.readouterr()
    spreads = [str(tmp_path / "dapi.png"), str(tmp_path / "giemsa.png")]
    predict = ["--spreads", "--no-tta", "--out", str(tmp_path / "c.csv")]
    assert main(["predict", str(model), *spreads, *predict]) == 0
    err = capsys.readouterr().err
    assert "dapi.png: warning" not in err, err
    assert "giemsa.png: warning: this image has dark chromosomes" in err and "DAPI" in err, err


def test_cli_predict_of_crops_cut_from_a_dapi_spread_warns(tmp_path, capsys):
    """`chromosort predict CROPS/` (no --spreads) with the bundled Giemsa model says when the
    crops were cut from a DAPI spread, and not for a Giemsa spread's crops."""
    from PIL import Image

    from napari_chromosome_sort.cli import main

    for name in ("dapi", "giemsa"):
        Image.fromarray(_spread(name)).save(tmp_path / f"{name}.png")
        spread = str(tmp_path / f"{name}.png")
        assert main(["segment", spread, "--out", str(tmp_path / "seg"), "--quiet"]) == 0
    capsys.readouterr()
    for name, warned in (("dapi", True), ("giemsa", False)):
        crops = tmp_path / "seg" / name / "crops"
        assert main(["predict", str(crops), "--no-tta", "--out", str(tmp_path / "c.csv")]) == 0
        err = capsys.readouterr().err
        assert ("crops: warning: these crops were cut from spreads with bright" in err) is warned
