"""The learned junction score: kept objects that are two touching chromosomes, cut apart."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread
from napari_chromosome_sort.segmentation.learned.junctions import (
    FEATURES,
    cut_features,
    fit_junction_model,
    load_junction_model,
)
from napari_chromosome_sort.synthetic import _render, _segment_mask

ON = SegmentationParams(junction_score="on")


def touching_spread(polarity: str = "dapi", seed: int = 3):
    """14 single rods and two rods lying side by side with a thin dim seam between them, each
    30 px long. Returns (image, the two rods' masks)."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    stain = np.zeros(shape, np.float32)
    for k in range(14):
        y, x = 12 + (k // 5) * 48, 15 + (k % 5) * 48
        stain[_segment_mask(shape, (y, x), (y + 30, x + 4), 4.0)] = 0.45
    a = _segment_mask(shape, (200, 90), (200, 120), 4.0)
    b = _segment_mask(shape, (210, 90), (210, 120), 4.0)
    stain[a | b] = 0.45
    return _render(stain, polarity, rng), a, b


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def _best_kept_iou(seg, truth: np.ndarray) -> float:
    kept = seg.labels * np.isin(seg.labels, seg.kept_labels())
    ids = np.unique(kept[truth])
    return max((_iou(seg.labels == i, truth) for i in ids if i), default=0.0)


def _model_taking_every_cut(path):
    """A junction model file whose every cut has probability ~1."""
    model = replace(load_junction_model(), coef=(0.0,) * len(FEATURES), intercept=10.0)
    return str(model.save(path))


def test_a_cut_taken_makes_two_kept_chromosomes_with_the_reason(tmp_path):
    image, a, b = touching_spread()
    plain = segment_spread(image, replace(ON, junction_score="off"))
    assert max(_best_kept_iou(plain, a), _best_kept_iou(plain, b)) < 0.5  # one object
    always = replace(ON, junction_model=_model_taking_every_cut(tmp_path / "always.json"))
    seg = segment_spread(image, always)
    assert _best_kept_iou(seg, a) >= 0.6 and _best_kept_iou(seg, b) >= 0.6
    cut = seg.objects[seg.objects["reason"].str.contains("touching chromosomes cut apart")]
    assert len(cut) == 2 and set(cut["status"]) == {"chromosome"}
    assert cut["reason"].str.contains("learned: p=1.00").all()
    # single rods offer no cut: only the pair changed
    assert len(seg.kept_labels()) == len(plain.kept_labels()) + 1
    assert seg.labels.max() == len(seg.objects)


def test_the_shipped_model_leaves_a_spread_of_single_rods_alone():
    image, _, _ = touching_spread()
    plain = segment_spread(image, replace(ON, junction_score="off"))
    seg = segment_spread(image, ON)
    assert np.array_equal(seg.labels, plain.labels)


def test_auto_cuts_fluorescence_only(tmp_path):
    image, _, _ = touching_spread(polarity="giemsa")
    always = _model_taking_every_cut(tmp_path / "always.json")
    seg = segment_spread(image, SegmentationParams(junction_model=always))  # "auto"
    assert not seg.objects["reason"].str.contains("cut apart where they meet").any()
    seg = segment_spread(image, SegmentationParams(junction_model=always, junction_score="on"))
    assert seg.objects["reason"].str.contains("cut apart where they meet").any()


@pytest.mark.parametrize("name", ["A020315D.tif", "A030125D.tif"])
def test_on_real_dapi_spreads_the_cuts_find_more_chromosomes(dapi_dir, name):
    from validation.data import read_dapi_pair
    from validation.segmentation import truth_found

    dapi = next(dapi_dir.glob(f"*/{name}"))
    image, truth = read_dapi_pair(dapi, dapi.with_name(dapi.name[:-5] + "K.tif"))
    found = {}
    for choice in ("off", "auto"):
        seg = segment_spread(image, SegmentationParams(junction_score=choice))
        found[choice] = truth_found(truth, seg.labels, seg.kept_labels())[0]
    assert found["auto"] >= found["off"] + 2


def test_cut_features_read_a_dim_junction_and_a_bend():
    pieces = np.zeros((20, 40), np.int32)
    pieces[8:13, 2:20] = 1
    pieces[8:13, 20:38] = 2
    signal = np.where(pieces > 0, 1.0, 0.0)
    signal[:, 19:21] *= 0.4  # a dim junction
    x = dict(zip(FEATURES, cut_features(pieces, signal, width=5.0, typical=90.0), strict=True))
    assert x["valley"] == pytest.approx(0.4, abs=0.05)
    assert x["cut_rel"] == pytest.approx(1.0)  # cut as long as the chromatid is wide
    assert x["piece_area_ratio"] == pytest.approx(1.0)
    assert x["angle"] == pytest.approx(0.0, abs=1.0)  # straight through
    assert x["log_rel_area"] == pytest.approx(np.log(180 / 90))


def test_fit_learns_which_cuts_are_right_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURES)))
    right = x[:, 1] < 0  # dim junctions are right
    model = fit_junction_model(x, right, source="toy")
    assert (model.probability(x)[right] > 0.5).mean() > 0.9
    assert (model.probability(x)[~right] < 0.5).mean() > 0.9
    path = model.save(tmp_path / "m.json")
    assert load_junction_model(path) == model


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "cannot read junction model"),
        ('{"format": "other"}', "not a junction model"),
        ('{"format": "chromosort-junction-model/1", "features": ["a"]}', "malformed"),
    ],
)
def test_a_bad_model_file_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ChromosortError, match=message):
        load_junction_model(path)


def test_the_shipped_model_reads_the_features_this_version_computes():
    model = load_junction_model()
    assert model.features == FEATURES and 0 < model.threshold < 1
    data = json.loads(model.to_json())
    assert "ADIR" in data["source"]
