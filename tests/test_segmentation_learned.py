"""The segmentation model learned from corrections: it fixes a planted error, splits what it
learned to split, orders objects by its uncertainty, its file is safe, its truth readers agree,
and the command line round trip works."""

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
from napari_chromosome_sort.segmentation.learned import (
    SPLIT_FEATURES,
    Candidates,
    SplitOption,
    TrainingSpread,
    apply_model,
    choose_settings,
    least_sure_first,
)
from napari_chromosome_sort.segmentation.learned.candidates import _measure_pieces
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
        ('{"format": "chromosort-segmentation-model/9"}', "learn the model again"),
        ("EDIT split_coef=[1.0, 2.0]", "'split_coef' must be none or 5 numbers"),
        ("EDIT split_intercept=NaN", "split classifier has non-finite numbers"),
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


def test_model_of_the_first_format_still_loads(model, tmp_path):
    data = json.loads(model.to_json())
    data["format"] = "chromosort-segmentation-model/1"
    for key in ("split_mean", "split_scale", "split_coef", "split_intercept"):
        del data[key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = load_segmentation_model(path)
    assert not old.splits and old.coef == model.coef


def test_settings_leave_the_defaults_only_for_a_clear_gain():
    spreads = [TrainingSpread("s", np.zeros((8, 8)), np.zeros((100, 4)))]
    base = SegmentationParams()
    found = {0.5: 90, 0.4: 91, 0.3: 93}  # 0.4 is within chance of the default, 0.3 is not

    def segment(spread, params):
        objects = pd.DataFrame({"status": ["chromosome"] * found[params.peak_fraction]})
        return Candidates(type("Seg", (), {"objects": objects})())

    import napari_chromosome_sort.segmentation.learned.training as learned

    original = learned._found
    learned._found = lambda seg, boxes: len(seg.objects)
    try:
        two = {"peak_fraction": [0.4, 0.5]}
        three = {"peak_fraction": [0.3, 0.4, 0.5]}
        assert choose_settings(spreads, base, two, segment=segment)[0] == {"peak_fraction": 0.5}
        assert choose_settings(spreads, base, three, segment=segment)[0] == {"peak_fraction": 0.3}
    finally:
        learned._found = original


def _two_rod_candidates():
    """A segmentation of one object made of two rods end to end, and its split into the two."""
    labels = np.zeros((40, 80), np.int32)
    labels[15:22, 5:35] = 1
    labels[15:22, 35:70] = 1
    signal = (labels > 0).astype(np.float32)
    pieces_full = np.zeros_like(labels)
    pieces_full[15:22, 5:35] = 1
    pieces_full[15:22, 35:70] = 2
    window = (slice(15, 22), slice(5, 70))
    from napari_chromosome_sort.segmentation.result import build_segmentation

    seg = build_segmentation(
        labels,
        [{"label": 1, "status": "chromosome", "reason": "single object", "n_parts": 1}],
        signal,
        "dark_on_light",
        SegmentationParams(),
        labels.shape,
    )
    pieces = pieces_full[window]
    option = SplitOption(1, window, pieces, _measure_pieces(pieces, window, signal))
    return Candidates(seg, [option])


def _with_split_classifier(model, intercept: float):
    from dataclasses import replace

    m = len(SPLIT_FEATURES)
    return replace(
        model,
        split_mean=(0.0,) * m,
        split_scale=(1.0,) * m,
        split_coef=(0.0,) * m,
        split_intercept=intercept,
        coef=(0.0,) * len(model.coef),
        intercept=3.0,
    )


def test_a_learned_split_replaces_the_object_by_its_pieces(model):
    c = _two_rod_candidates()
    split = apply_model(c, _with_split_classifier(model, 3.0))
    assert sorted(split.objects["label"]) == [2, 3]
    assert set(np.unique(split.labels)) == {0, 2, 3}
    assert (split.objects["status"] == "chromosome").all()
    assert split.objects["reason"].str.startswith("split from a touching group (2 pieces)").all()
    assert split.objects["area"].sum() == c.seg.objects["area"].sum()
    kept_whole = apply_model(c, _with_split_classifier(model, -3.0))
    assert list(kept_whole.objects["label"]) == [1] and kept_whole.labels.max() == 1
    assert not model.splits  # learned without right splits: never splits
    assert list(apply_model(c, model).objects["label"]) == [1]


def test_least_sure_first_orders_by_distance_from_the_threshold(model):
    seg = segment_spread(_spread(35).image, PLANTED)
    order = least_sure_first(seg, model)
    assert sorted(order["label"]) == sorted(seg.objects["label"])
    assert np.all(np.diff(order["certainty"]) >= 0)
    p = pd.Series(model.probabilities(seg.objects), index=seg.objects["label"].to_numpy())
    assert np.allclose(order["p"], p.loc[order["label"]].to_numpy())
    distance = np.abs(order["p"] - model.threshold)
    assert distance.iloc[0] == distance.min()
    # after the model was applied, its probabilities are read from the reasons
    applied = least_sure_first(segment_with_model(_spread(35).image, model, PLANTED), model)
    assert np.all(np.diff(applied["certainty"]) >= 0)
    assert applied["p"].between(0, 1).all()


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


# --- learning from spreads reviewed in napari ------------------------------------------------


def _reviewed(spread, params=PLANTED):
    """The rules' segmentation of ``spread`` reviewed as a user would: every object matching a
    truth chromosome kept, every other one rejected."""
    seg = segment_spread(spread.image, params)
    objects = seg.objects.copy()
    hit = matched_objects(_truth_boxes(spread), objects)
    objects["status"] = np.where(hit, "chromosome", "rejected")
    return seg.labels.copy(), objects


def test_a_reviewed_spread_gives_the_truth_of_a_corrected_segment_folder(tmp_path):
    import tifffile

    from napari_chromosome_sort.segmentation.learned import reviewed_spread

    spread = _spread(34)
    labels, objects = _reviewed(spread)
    kept = objects.loc[objects["status"] == "chromosome", "label"].astype(int)
    labels[labels == int(kept.iloc[0])] = 0  # a kept object erased by hand: its row is stale
    labels[5:25, 5:12] = int(kept.iloc[1])  # another one painted larger
    folder = tmp_path / "seg" / "s"
    folder.mkdir(parents=True)
    objects.to_csv(folder / "objects.csv", index=False)
    tifffile.imwrite(folder / "labels.tif", labels)
    reviewed = reviewed_spread("s.png", spread.image, labels, objects)
    from_folder = read_truth(tmp_path / "seg", tmp_path / "s.png", spread.image.shape)
    np.testing.assert_array_equal(reviewed.boxes, from_folder)
    assert len(reviewed.boxes) == len(kept) - 1
    assert reviewed.boxes[:, :2].min() == 5  # measured on the painted labels
    with pytest.raises(ChromosortError, match="no statuses"):
        reviewed_spread("s.png", spread.image, labels, objects.drop(columns="status"))


def test_a_learning_session_learns_from_every_reviewed_spread():
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.segmentation.learned import (
        LearningSession,
        describe_model,
        reviewed_spread,
    )

    session = LearningSession(grid=SMALL_GRID)
    spreads = {seed: _spread(seed) for seed in (31, 36)}
    reviewed = {
        seed: reviewed_spread(f"s{seed}", s.image, *_reviewed(s)) for seed, s in spreads.items()
    }
    first = run_to_end(session.learn(reviewed[31], PLANTED))
    assert first.spreads == ("s31",) and session.model is first
    messages: list[str] = []
    both = run_to_end(session.learn(reviewed[36], PLANTED), lambda r: messages.append(r.message))
    assert both.spreads == ("s31", "s36")
    assert both.examples["chromosome"] > first.examples["chromosome"]
    # the first spread's candidates were remembered: only the new one was segmented
    assert [m for m in messages if m.startswith("Segmenting")] == ["Segmenting s36 (2/2)"]
    assert describe_model(both) == (
        f"Learned from 2 spreads: {both.examples['chromosome']} chromosomes, "
        f"{both.examples['other']} other objects"
    )
    again = run_to_end(session.learn(reviewed[31], PLANTED))  # a spread reviewed again
    assert again.spreads == ("s31", "s36")

    # the session's model fixes the planted error on a spread it did not learn from
    test = _spread(32)
    truth = _truth_boxes(test)
    kept, found = _kept_found(segment_with_model(test.image, both, PLANTED), truth)
    kept_rules, found_rules = _kept_found(segment_spread(test.image, PLANTED), truth)
    assert kept_rules - found_rules >= 8 and kept - found <= 1 and found >= found_rules - 1

    # a review that leaves nothing to learn from fails and leaves the session as it was
    labels, objects = _reviewed(spreads[31])
    nothing = reviewed_spread("s31", spreads[31].image, labels, objects.assign(status="rejected"))
    fresh = LearningSession(grid=SMALL_GRID)
    with pytest.raises(ChromosortError, match="no candidate object matches"):
        run_to_end(fresh.learn(nothing, PLANTED))
    assert fresh.model is None and not fresh.spreads


def test_compare_with_rules_counts_what_the_model_changed(model):
    from napari_chromosome_sort.segmentation.learned import compare_with_rules

    image = _spread(32).image
    rules = segment_spread(image, PLANTED)
    learned = segment_with_model(image, model, PLANTED, rules=rules)
    pd.testing.assert_frame_equal(  # the rules' segmentation reused: the same result
        learned.objects, segment_with_model(image, model, PLANTED).objects
    )
    changes = compare_with_rules(rules, learned)
    assert changes.rules_kept == len(rules.kept_labels()) and changes.kept == len(
        learned.kept_labels()
    )
    assert changes.rejected >= 8 and changes.rules_kept - changes.kept == (
        changes.rejected - changes.added
    )
    assert len(changes.objects) == changes.split + changes.rejected + changes.added
    assert changes.summary().startswith(
        f"model: {changes.kept} kept (rules: {changes.rules_kept}); "
    )
    assert f"{changes.rejected} rejected" in changes.summary()
    # a split of the model: one "split" change where the rules kept the whole object
    c = _two_rod_candidates()
    split = compare_with_rules(c.seg, apply_model(c, _with_split_classifier(model, 3.0)))
    assert (split.split, split.rejected, split.added, split.kept) == (1, 0, 0, 2)
    assert split.summary() == "model: 2 kept (rules: 1); 1 split"
    same = compare_with_rules(rules, rules)
    assert same.summary().endswith("no object changed") and same.objects.empty


def test_least_sure_first_reads_the_stored_probabilities_of_a_reviewed_table(model):
    from napari_chromosome_sort.segmentation.learned import P_COLUMN, model_probabilities

    seg = segment_with_model(_spread(35).image, model, PLANTED)
    objects = seg.objects.copy()
    objects[P_COLUMN] = model_probabilities(objects, model)
    objects.loc[objects.index[0], "reason"] = "kept by user"  # the stored p stays
    painted = {"label": 999, "status": "chromosome", "reason": "edited by user", "area": 50}
    objects = pd.concat([objects, pd.DataFrame([painted])], ignore_index=True)
    order = least_sure_first(objects, model)
    assert order["label"].iloc[-1] == 999 and np.isnan(order["p"].iloc[-1])
    stored = order.set_index("label")["p"]
    assert np.isclose(stored.loc[objects["label"].iloc[0]], objects[P_COLUMN].iloc[0])


def test_objects_of_a_status_the_model_never_saw_keep_the_rules_status(model, tmp_path):
    from dataclasses import replace

    from napari_chromosome_sort.segmentation.learned import PRIOR_STATUSES

    train = segment_spread(_spread(31).image, PLANTED).objects
    assert model.statuses == tuple(s for s in PRIOR_STATUSES if s in set(train["status"]))
    assert "debris" not in model.statuses  # the planted error: nothing is debris
    rules = segment_spread(_spread(32).image)  # the shipped rules: debris among the objects
    debris = rules.objects["status"] == "debris"
    assert debris.any()
    keep_all = replace(model, coef=(0.0,) * len(model.coef), intercept=3.0)
    judged = apply_model(rules, replace(keep_all, statuses=PRIOR_STATUSES)).objects
    assert (judged["status"] == "chromosome").all()  # a model judging debris keeps it
    learned = apply_model(rules, keep_all).objects
    assert (learned.loc[debris, "status"] == "debris").all()
    assert (
        learned.loc[debris, "reason"]
        .str.contains(r"learned: p=0\.95, not judged \(no debris object")
        .all()
    )
    assert (
        (learned.loc[~debris & rules.objects["status"].isin(model.statuses), "status"])
        .eq("chromosome")
        .all()
    )
    # the statuses travel with the file; a file of the second format judges every status
    again = load_segmentation_model(model.save(tmp_path / "m.json"))
    assert again.statuses == model.statuses
    data = json.loads(model.to_json())
    data["format"] = "chromosort-segmentation-model/2"
    del data["statuses"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert load_segmentation_model(tmp_path / "old.json").statuses == PRIOR_STATUSES
    data = json.loads(model.to_json())
    data["statuses"] = ["chromosome", "tangle"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ChromosortError, match="'statuses' may only hold"):
        load_segmentation_model(tmp_path / "bad.json")


def test_the_classifier_and_the_splits_are_used_only_for_a_gain_on_unseen_spreads(model):
    from dataclasses import replace

    from napari_chromosome_sort.segmentation.learned import (
        classifier_gain,
        describe_model,
        split_gain,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x[:, 0] > 0  # the first measure tells chromosomes from the rest
    spread = np.repeat([0, 1], 100)
    kept_all = np.full(200, "chromosome")
    assert classifier_gain(x, y, kept_all, spread, 0.5) >= 80  # the rules keep everything
    right = np.where(y, "chromosome", "debris")
    assert classifier_gain(x, y, right, spread, 0.5) <= 0  # the rules are right already
    assert classifier_gain(x, y, kept_all, np.zeros(200, int), 0.5) >= 80  # one spread: folds
    gain = np.where(x[:, 0] > 0, 1, -1)  # splits that gain one box, or lose one
    assert split_gain(x, gain, spread) >= 80
    assert split_gain(x, -np.abs(gain), spread) == 0  # no right split: none taken
    assert model.classify and model.examples["classifier_gain"] >= 2
    # a model whose classifier gained nothing leaves every status to the rules
    rules = segment_spread(_spread(32).image, PLANTED)
    ruled = apply_model(rules, replace(model, classify=False)).objects
    assert list(ruled["status"]) == list(rules.objects["status"])
    assert ruled["reason"].str.contains("the rules decide").all()
    assert describe_model(replace(model, classify=False)).endswith("(the model was not better)")


def test_settings_from_several_spreads_must_gain_on_spreads_they_were_not_chosen_on():
    import napari_chromosome_sort.segmentation.learned.training as learned

    base = SegmentationParams()
    grid = {"peak_fraction": [0.3, 0.5]}
    spreads = [TrainingSpread(n, np.zeros((8, 8)), np.zeros((50, 4))) for n in "abc"]

    def run(found):
        def segment(spread, params):
            n = found[spread.name][params.peak_fraction]
            return Candidates(type("Seg", (), {"objects": pd.DataFrame({"n": range(n)})})())

        return choose_settings(spreads, base, grid, segment=segment)[0]

    original = learned._found
    learned._found = lambda seg, boxes: len(seg.objects)
    try:
        # one spread gains much, the others lose a little: chosen on all three, not on two
        lucky = {"a": {0.5: 30, 0.3: 48}, "b": {0.5: 40, 0.3: 39}, "c": {0.5: 40, 0.3: 39}}
        assert run(lucky) == {"peak_fraction": 0.5}
        steady = {k: {0.5: 40, 0.3: 45} for k in "abc"}  # every spread gains
        assert run(steady) == {"peak_fraction": 0.3}
    finally:
        learned._found = original
