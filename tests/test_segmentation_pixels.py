"""The learned pixel classes: targets from karyotype masks, the forest file, cutting clusters."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread
from napari_chromosome_sort.segmentation.learned import pixels as lp
from napari_chromosome_sort.synthetic import make_spread


def _forest(n=600, seed=0):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 1)  # classes 0-3
    forest = RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0).fit(x, y)
    return forest, x


def test_forest_arrays_predict_as_scikit_learn_does(tmp_path):
    forest, x = _forest()
    arrays = lp.PixelForest.from_sklearn(forest)
    assert np.allclose(arrays.predict_proba(x), forest.predict_proba(x), atol=1e-5)
    # (H, W, F) features give (H, W, C) probabilities
    assert arrays.predict_proba(x[:600].reshape(20, 30, 5)).shape == (20, 30, 4)
    arrays.save(tmp_path / "m.safetensors")
    again = lp.PixelForest.load(tmp_path / "m.safetensors")
    assert np.array_equal(again.predict_proba(x), arrays.predict_proba(x))


def test_bad_model_files_and_features_are_named(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not a model")
    with pytest.raises(ChromosortError, match="cannot read pixel model"):
        lp.PixelForest.load(bad)
    forest, x = _forest()
    with pytest.raises(ChromosortError, match="expects 5 features"):
        lp.PixelForest.from_sklearn(forest).predict_proba(x[:, :3])
    with pytest.raises(ChromosortError, match="pixel_classes"):
        segment_spread(np.zeros((32, 32), np.uint8), SegmentationParams(pixel_classes="yes"))


def test_targets_mark_contacts_and_real_overlaps_only():
    truth = np.zeros((40, 60), np.uint8)
    truth[10:30, 5:20] = 3  # two chromosomes of different classes touching at column 20
    truth[10:30, 20:35] = 7
    truth[12:18, 40:56] = 255  # a real overlap region (>= width^2 / 2)
    truth[35, 50] = 255  # a speck
    targets = lp.pixel_targets(truth, width=6.0)
    assert (targets[15, 19], targets[15, 20]) == (lp.CONTACT, lp.CONTACT)
    assert targets[15, 10] == lp.CHROMOSOME and targets[15, 30] == lp.CHROMOSOME
    assert targets[15, 45] == lp.OVERLAP
    assert targets[35, 50] == lp.IGNORE and targets[9, 10] == lp.IGNORE  # speck, outline ring
    assert targets[2, 2] == lp.BACKGROUND


def _rods_and_cluster(overlap: bool):
    """Three kept rods (labels 1-3) and a cluster (4) of two rods end to end, with class
    probabilities that see the two rods (and, with ``overlap``, an overlap on the second)."""
    labels = np.zeros((60, 140), np.int32)
    proba = np.zeros((60, 140, 4), np.float32)
    proba[..., lp.BACKGROUND] = 1
    for k, x0 in enumerate((5, 40, 75), 1):
        labels[5:13, x0 : x0 + 30] = k
    labels[30:38, 10:70] = 4
    for x0, x1 in ((10, 39), (41, 70)):
        proba[30:38, x0:x1] = (0, 1, 0, 0)
    proba[30:38, 39:41] = (0, 0, 1, 0)  # the contact between them
    if overlap:
        proba[30:38, 60:68] = (0, 0, 0, 1)
    objects = [{"label": k, "status": "chromosome", "reason": "", "n_parts": 1} for k in (1, 2, 3)]
    objects.append({"label": 4, "status": "cluster", "reason": "too large", "n_parts": 1})
    return labels, objects, proba


def test_a_cluster_of_two_rods_is_cut_into_two_kept_chromosomes():
    labels, objects, proba = _rods_and_cluster(overlap=False)
    masks = lp.refine_objects(labels, objects, proba, width=8.0)
    new = [o for o in objects if o["label"] > 4]
    assert [o["status"] for o in new] == ["chromosome", "chromosome"] and masks == {}
    left, right = (labels == new[0]["label"]), (labels == new[1]["label"])
    assert left[30:38, 10:38].all() and right[30:38, 42:70].all()
    assert "cut out by the learned pixel classes" in objects[3]["reason"]


def test_a_piece_on_learned_overlap_is_set_aside_as_a_crossing_half():
    labels, objects, proba = _rods_and_cluster(overlap=True)
    masks = lp.refine_objects(labels, objects, proba, width=8.0, piece_overlap_min=0.3)
    statuses = {o["label"]: o["status"] for o in objects if o["label"] > 4}
    assert sorted(statuses.values()) == ["chromosome", "crossing-resolved"]
    (half,) = [k for k, s in statuses.items() if s == "crossing-resolved"]
    y0, x0, mask = masks[half]
    assert mask[30 - y0 : 38 - y0, 60 - x0 : 68 - x0].all()  # its full mask holds the overlap


def test_kept_objects_and_lone_clusters_are_left_alone():
    labels, objects, proba = _rods_and_cluster(overlap=False)
    proba[30:38, 39:41] = (0, 1, 0, 0)  # no contact: the cluster is one seed, not cut
    before = labels.copy()
    assert lp.refine_objects(labels, objects, proba, width=8.0) == {}
    assert np.array_equal(labels, before) and len(objects) == 4


def test_pixel_classes_apply_to_fluorescence_only_by_default():
    assert lp.pixel_classes_on(SegmentationParams(pixel_classes="auto"), "bright_on_dark")
    assert not lp.pixel_classes_on(SegmentationParams(pixel_classes="auto"), "dark_on_light")
    assert lp.pixel_classes_on(SegmentationParams(), "bright_on_dark")  # "auto" by default
    assert not lp.pixel_classes_on(SegmentationParams(), "dark_on_light")


def test_segment_spread_with_the_shipped_pixel_model_keeps_the_synthetic_chromosomes():
    spread = make_spread(seed=3, n_chromosomes=20, modality="dapi", n_clusters=2)
    off = segment_spread(spread.image, SegmentationParams(pixel_classes="off"))
    on = segment_spread(spread.image, SegmentationParams(pixel_classes="on"))
    kept_off, kept_on = len(off.kept_labels()), len(on.kept_labels())
    # the cut only ever adds pieces of clusters: every object kept by the rules is kept
    assert kept_on >= kept_off >= 15
    assert set(on.objects["status"]) <= {*off.objects["status"], "crossing-resolved"}


def test_shipped_model_reads_a_real_dapi_spread(dapi_dir):
    from scipy import ndimage as ndi
    from validation.data import read_dapi_pair

    dapi = dapi_dir / "A01__XY" / "A0101XYD.tif"
    image, truth = read_dapi_pair(dapi, dapi.with_name("A0101XYK.tif"))
    seg = segment_spread(image)
    from validation.dapi_pixels import typical_peak

    proba = lp.shipped_model().predict_proba(
        lp.pixel_features(seg.signal, typical_peak(seg.signal), seg.stats["width"])
    )
    best = proba.argmax(-1)
    targets = lp.pixel_targets(truth, seg.stats["width"])
    assert (best[targets == lp.CHROMOSOME] == lp.CHROMOSOME).mean() > 0.8
    assert (best[targets == lp.BACKGROUND] == lp.BACKGROUND).mean() > 0.9
    # about one seed (connected learned chromosome pixels of >= ½ width^2) per truth chromosome
    seeds, n = ndi.label(best == lp.CHROMOSOME)
    sizes = np.bincount(seeds.ravel())[1:]
    n_seeds = int((sizes >= 0.5 * seg.stats["width"] ** 2).sum())
    n_truth = sum(ndi.label(truth == c)[1] for c in range(1, 25))
    assert 0.7 * n_truth < n_seeds < 1.3 * n_truth


def _iou(x, y) -> float:
    return float((x & y).sum() / max((x | y).sum(), 1))


def _kept_x_and_rods(overlap_px: int):
    """Three kept rods (labels 1-3) and a kept X of two crossing rods (4), with probabilities
    that see chromosome on all of them and ``overlap`` on a centred square at the crossing."""
    from napari_chromosome_sort.synthetic import _segment_mask

    shape = (90, 140)
    labels = np.zeros(shape, np.int32)
    for k, x0 in enumerate((5, 40, 75), 1):
        labels[5:13, x0 : x0 + 30] = k
    a = _segment_mask(shape, (25, 25), (85, 85), 4.0)
    b = _segment_mask(shape, (25, 85), (85, 25), 4.0)
    labels[a | b] = 4
    proba = np.zeros((*shape, 4), np.float32)
    proba[..., lp.BACKGROUND] = 1
    proba[labels > 0] = (0, 1, 0, 0)
    r = overlap_px // 2
    proba[55 - r : 55 + r, 55 - r : 55 + r] = (0, 0, 0, 1)
    objects = [{"label": k, "status": "chromosome", "reason": "", "n_parts": 1} for k in (1, 2, 3)]
    objects.append({"label": 4, "status": "chromosome", "reason": "", "n_parts": 1})
    return labels, objects, proba, (a, b)


def test_a_kept_x_on_a_compact_learned_overlap_is_resolved_into_its_two_chromosomes():
    labels, objects, proba, (a, b) = _kept_x_and_rods(overlap_px=8)
    masks = lp.refine_objects(labels, objects, proba, width=8.0, kept_overlap_min=0.5)
    statuses = {o["label"]: o["status"] for o in objects}
    assert [statuses[k] for k in (1, 2, 3)] == ["chromosome"] * 3  # no overlap: left kept
    assert statuses[4] == "crossing-resolved" and len(objects) == 5
    (second,) = masks
    y0, x0, local = masks[second]
    full = np.zeros(labels.shape, bool)
    full[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local
    halves = (labels == 4, full)
    assert max(_iou(halves[0], a), _iou(halves[0], b)) >= 0.8
    assert max(_iou(halves[1], a), _iou(halves[1], b)) >= 0.8
    assert _iou(halves[0], a) >= 0.8 or _iou(halves[1], a) >= 0.8  # one of each rod
    assert _iou(halves[0], b) >= 0.8 or _iou(halves[1], b) >= 0.8
    assert "learned overlap (64 px = 1.0 x width^2 >= 0.5" in objects[3]["reason"]


def test_overlap_below_the_limit_or_off_leaves_kept_objects_kept():
    for overlap_px, limit in ((4, 0.5), (8, 0.0)):  # 16 px < 0.5 x 64; the rule off
        labels, objects, proba, _ = _kept_x_and_rods(overlap_px)
        before = labels.copy()
        assert lp.refine_objects(labels, objects, proba, width=8.0, kept_overlap_min=limit) == {}
        assert np.array_equal(labels, before) and all(o["status"] == "chromosome" for o in objects)


def test_an_overlap_without_two_chromosomes_around_it_is_set_aside():
    """A compact overlap at one end of a rod leaves one arm: not resolvable, so the object is
    set aside as a cluster, the reason quoting the numbers."""
    labels, objects, proba, _ = _kept_x_and_rods(overlap_px=0)
    proba[5:13, 5:15] = (0, 0, 0, 1)  # 80 px of overlap at the end of rod 1
    masks = lp.refine_objects(labels, objects, proba, width=8.0, kept_overlap_min=1.0)
    assert masks == {} and objects[0]["status"] == "cluster"
    assert "80 px = 1.2 x width^2 >= 1" in objects[0]["reason"]
    assert [o["status"] for o in objects[1:]] == ["chromosome"] * 3


def test_a_cluster_the_cut_leaves_whole_is_resolved_at_its_learned_overlap():
    """A cluster with no chromosome seeds to cut (seeds of 20 x width^2 asked for) is resolved
    at its learned overlap into its two rods with ``cluster_overlap_min``; without, it stays."""
    for limit, expected in ((0.25, "crossing-resolved"), (0.0, "cluster")):
        labels, objects, proba, (a, b) = _kept_x_and_rods(overlap_px=8)
        objects[3]["status"] = "cluster"
        masks = lp.refine_objects(
            labels, objects, proba, width=8.0, min_seed=20.0, cluster_overlap_min=limit
        )
        assert objects[3]["status"] == expected
        assert len(masks) == (limit > 0) and len(objects) == 4 + (limit > 0)
        if limit > 0:  # the label keeps one rod whole (the other's full mask is in masks)
            half = labels == 4
            assert max(_iou(half, a), _iou(half, b)) >= 0.8


def test_resolve_at_overlap_pairs_the_arms_that_go_straight_through():
    from napari_chromosome_sort.segmentation.crossings.resolve import resolve_at_overlap
    from napari_chromosome_sort.synthetic import _segment_mask

    shape = (80, 80)
    bar = _segment_mask(shape, (20, 10), (20, 70), 4.0)
    stem = _segment_mask(shape, (20, 40), (70, 40), 4.0)
    centre = np.zeros(shape, bool)
    centre[16:25, 36:45] = True
    found = resolve_at_overlap(bar | stem, centre, 8.0)
    assert found is not None and found.n_arms == 3 and found.bend_deg < 15
    halves = sorted((found.first, found.second), key=lambda h: _iou(h, bar), reverse=True)
    assert _iou(halves[0], bar) >= 0.8 and _iou(halves[1], stem) >= 0.7
    assert (found.shared == (centre & (bar | stem))).all()
    # two arms: two chromosomes overlapping end to end, each its arm and the overlap
    ell = _segment_mask(shape, (20, 10), (20, 40), 4.0) | stem
    two = resolve_at_overlap(ell, centre, 8.0)
    assert two is not None and two.n_arms == 2
    assert (two.first & two.second).sum() == (centre & ell).sum()
    # a Y of arms 120 degrees apart has no straight pair: over a bend limit of 45 degrees
    rays = [
        _segment_mask(shape, (40, 40), (40 + 30 * np.sin(t), 40 + 30 * np.cos(t)), 4.0)
        for t in np.linspace(0, 2 * np.pi, 3, endpoint=False)
    ]
    middle = np.zeros(shape, bool)
    middle[36:45, 36:45] = True
    assert resolve_at_overlap(np.any(rays, axis=0), middle, 8.0, max_bend=45.0) is None
    # a heap: five arms around the overlap
    rays = [
        _segment_mask(shape, (40, 40), (40 + 30 * np.sin(t), 40 + 30 * np.cos(t)), 4.0)
        for t in np.linspace(0, 2 * np.pi, 5, endpoint=False)
    ]
    heap = np.any(rays, axis=0)
    middle = np.zeros(shape, bool)
    middle[36:45, 36:45] = True
    assert resolve_at_overlap(heap, middle, 8.0) is None
