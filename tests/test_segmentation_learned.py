"""The segmentation model learned from corrections: it fixes a planted error, its file is safe,
its truth readers agree, and the command line round trip works."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_chromosome_sort.cli import main
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation import (
    SegmentationParams,
    learn_segmentation,
    load_segmentation_model,
    segment_spread,
    segment_with_model,
)
from napari_chromosome_sort.segmentation.learned import TrainingSpread
from napari_chromosome_sort.segmentation.truth import BOX_COLUMNS, matched_objects, read_truth
from napari_chromosome_sort.synthetic import make_spread

# the planted systematic error: no size limits, so debris specks and tangles are kept
PLANTED = SegmentationParams(
    debris_area_fraction=0.0, split_touching=False, cluster_area_factor=100
)
SMALL_GRID = {"peak_fraction": [0.5]}


def _spread(seed: int):
    return make_spread(seed=seed, n_chromosomes=20, n_nuclei=1, n_debris=10, n_clusters=2)


def _truth_boxes(spread) -> np.ndarray:
    return spread.truth.loc[spread.truth["kind"] == "chromosome", BOX_COLUMNS].to_numpy(float)


def _kept_found(seg, truth) -> tuple[int, int]:
    kept = seg.objects[seg.objects["status"] == "chromosome"]
    return len(kept), int(matched_objects(truth, kept).sum())


@pytest.fixture(scope="module")
def model():
    train = _spread(31)
    return learn_segmentation(
        [TrainingSpread("s31", train.image, _truth_boxes(train))], PLANTED, SMALL_GRID
    )


def test_learning_fixes_a_planted_error(model):
    test = _spread(32)
    truth = _truth_boxes(test)
    kept_before, found_before = _kept_found(segment_spread(test.image, PLANTED), truth)
    assert kept_before - found_before >= 8  # the planted error: debris and tangles kept
    seg = segment_with_model(test.image, model, PLANTED)
    kept, found = _kept_found(seg, truth)
    assert found >= found_before - 1
    assert kept - found <= 1
    kept_reasons = seg.objects.loc[seg.objects["status"] == "chromosome", "reason"]
    assert kept_reasons.str.match(r"learned: p=0\.\d\d|learned: p=1\.00").all()
    assert model.spreads == ("s31",) and model.examples["other"] >= 8


def test_model_file_round_trip(model, tmp_path):
    path = model.save(tmp_path / "model.json")
    again = load_segmentation_model(path)
    assert again == model
    objects = segment_spread(_spread(33).image, PLANTED).objects
    assert np.allclose(again.probabilities(objects), model.probabilities(objects))


def _edited(model, **changes) -> str:
    data = json.loads(model.to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json {", "cannot read segmentation model"),
        ('{"format": "chromosort-crossing-model/1"}', "not a segmentation model"),
        ("[1, 2]", "not a segmentation model"),
        ("EDIT coef=[1.0]", "'coef' must be"),
        ("EDIT intercept=NaN", "'intercept' must be a finite number"),
        ("EDIT settings={'min_area_px': 3}", "'settings' may only hold"),
        ("EDIT features=['a']", "expects features"),
        ("DROP mean", "incomplete or malformed"),
    ],
)
def test_corrupt_or_foreign_model_file_is_refused(model, tmp_path, text, message):
    if text.startswith("EDIT"):
        key, value = text[5:].split("=", 1)
        value = float("nan") if value == "NaN" else eval(value)  # noqa: S307 (test literals)
        text = _edited(model, **{key: value})
    elif text.startswith("DROP"):
        data = json.loads(model.to_json())
        del data[text[5:]]
        text = json.dumps(data)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ChromosortError, match=message):
        load_segmentation_model(path)


def _write_truth_forms(spread, folder) -> dict[str, object]:
    """The spread's chromosome boxes as YOLO, COCO and a segment output folder."""
    h, w = spread.image.shape[:2]
    boxes = _truth_boxes(spread)
    y0, x0, y1, x1 = boxes.T
    yolo = folder / "yolo"
    yolo.mkdir()
    lines = [
        f"0 {(a + c) / 2 / w} {(b + d) / 2 / h} {(c - a) / w} {(d - b) / h}" for b, a, d, c in boxes
    ]
    (yolo / "s.txt").write_text("\n".join(lines))
    coco = {
        "images": [{"id": 7, "file_name": "s.png", "width": w, "height": h}],
        "categories": [{"id": 1, "name": "chromosome"}, {"id": 2, "name": "nucleus"}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "bbox": [a, b, c - a, d - b]} for b, a, d, c in boxes
        ]
        + [{"image_id": 7, "category_id": 2, "bbox": [0, 0, 50, 50]}],
    }
    (folder / "coco.json").write_text(json.dumps(coco))
    segdir = folder / "seg" / "s"
    segdir.mkdir(parents=True)
    objects = pd.DataFrame(boxes, columns=BOX_COLUMNS).assign(
        label=np.arange(1, len(boxes) + 1), status="chromosome"
    )
    extra = pd.DataFrame([[0, 0, 50, 50, len(boxes) + 1, "debris"]], columns=objects.columns)
    pd.concat([objects, extra]).to_csv(segdir / "objects.csv", index=False)
    return {"yolo": yolo, "coco": folder / "coco.json", "segment": folder / "seg"}


def test_truth_readers_agree(tmp_path):
    spread = _spread(34)
    forms = _write_truth_forms(spread, tmp_path)
    expected = _truth_boxes(spread)
    for kind, path in forms.items():
        boxes = read_truth(path, tmp_path / "s.png", spread.image.shape)
        assert np.allclose(boxes, expected, atol=1e-6), kind
    with pytest.raises(ChromosortError, match="no truth for other.png"):
        read_truth(forms["yolo"], tmp_path / "other.png", spread.image.shape)


def test_cli_learn_then_segment_with_the_model(tmp_path, capsys):
    train, test = _spread(31), _spread(32)
    Image.fromarray(train.image).save(tmp_path / "s.png")
    Image.fromarray(test.image).save(tmp_path / "t.png")
    forms = _write_truth_forms(train, tmp_path)
    model_path = tmp_path / "lab.json"
    args = ["segment-learn", str(tmp_path / "s.png"), "--truth", str(forms["coco"])]
    assert main([*args, "--out", str(model_path), "--quiet"]) == 0
    assert json.loads(model_path.read_text())["spreads"] == ["s.png"]
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "t.png"), "--out", str(out), "--no-crops", "--quiet"]
    assert main([*args, "--model", str(model_path)]) == 0
    objects = pd.read_csv(out / "t" / "objects.csv")
    assert objects["reason"].str.contains("learned: p=").all()
    kept = objects[objects["status"] == "chromosome"]
    assert matched_objects(_truth_boxes(test), kept).sum() >= 18
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    assert main([*args, "--model", str(tmp_path / "bad.json")]) == 2
    assert "not a segmentation model" in capsys.readouterr().err
