"""The simulated correction loop (``python -m validation correction-loop``) on a synthetic
spread: exactly k calls corrected, least sure first, the rest scored on their own."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import train_tiny_model
from validation.correction_loop import (
    LoopSpread,
    correct_and_retrain,
    least_sure_matched,
    loop_rows,
    pooled_table,
    random_matched,
    score_loop,
)


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    """A tiny model (random weights, synthetic crops), its prepared session on a synthetic
    spread, and a made-up annotation: every other object matched, its box class the class
    the model did NOT call (so each correction changes a call), plus two unmatched boxes."""
    from napari_chromosome_sort import synthetic
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.classification.training.corrections import CorrectionSession
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.progress import run_to_end

    root = tmp_path_factory.mktemp("loop")
    model = train_tiny_model(root)
    prediction = predict_spread(model, synthetic.make_spread(seed=0).image)
    session = CorrectionSession(model, prediction, CropDataset(root / "unused"), "s0.png")
    run_to_end(session.prepare())
    table = prediction.table
    classes = list(model.classes)
    truth_of = {}
    for i, (label, called) in enumerate(zip(table["label"], table["class"], strict=True)):
        if i % 2 == 0:
            truth_of[int(label)] = (classes.index(called) + 1) % len(classes)
    box_classes = np.array([*truth_of.values(), 0, 1])
    return LoopSpread("s0.png", session, truth_of, box_classes)


def test_least_sure_picks_k_matched_calls_in_the_walks_order(spread):
    assert len(spread.truth_of) >= 6
    picked = least_sure_matched(spread.session, spread.truth_of, 5, "pass")
    walk = [label for label in spread.session.least_sure() if label in spread.truth_of]
    assert picked == walk[:5] and len(set(picked)) == 5
    rng = np.random.default_rng(0)
    assert set(random_matched(spread.truth_of, 5, rng, unmatched="pass")) <= set(spread.truth_of)
    # asking for more than there are: every matched call once
    assert sorted(least_sure_matched(spread.session, spread.truth_of, 10**6, "pass")) == sorted(
        spread.truth_of
    )
    # marking unmatched objects not a chromosome: the walk as it is, every kept object a pick
    assert (
        least_sure_matched(spread.session, spread.truth_of, 5) == (spread.session.least_sure()[:5])
    )
    kept = spread.session.table["label"].astype(int).tolist()
    drawn = random_matched(spread.truth_of, len(kept), np.random.default_rng(0), kept)
    assert sorted(drawn) == sorted(kept)
    # the walk by class: the same calls, the called classes in turn
    by_class = least_sure_matched(spread.session, spread.truth_of, 10**6, walk="by-class")
    assert by_class == spread.session.least_sure(by_class=True)
    assert sorted(by_class) == sorted(spread.session.least_sure())
    called = spread.session.table.set_index("label")["class"]
    first = [called[label] for label in by_class[: called.nunique()]]
    assert sorted(first) == sorted(called.unique())  # one call of every called class first
    # the smallest margin first
    margin = least_sure_matched(spread.session, spread.truth_of, 10**6, walk="margin")
    p = spread.session.table.set_index("label")[[f"p_{c}" for c in spread.session.classes]]
    top2 = np.sort(p.loc[margin].to_numpy(float), axis=1)[:, -2:]
    assert sorted(margin) == sorted(by_class)
    assert np.all(np.diff(top2[:, 1] - top2[:, 0]) >= 0)


def test_an_unmatched_object_is_marked_not_a_chromosome(spread, tmp_path):
    unmatched = [x for x in spread.session.least_sure() if x not in spread.truth_of][:2]
    matched = least_sure_matched(spread.session, spread.truth_of, 1, "pass")
    table = correct_and_retrain(spread, [*unmatched, *matched], tmp_path / "d")
    labels = table["label"].astype(int).tolist()
    assert not set(unmatched) & set(labels)
    assert len(labels) == len(spread.session.table) - 2
    assert len(list((tmp_path / "d").rglob("*.png"))) == 1  # only the class correction saved
    classes = spread.session.classes
    row = score_loop(table, classes, spread.truth_of, spread.box_classes, [*unmatched, *matched])
    assert row["corrected"] == 1 and row["rejected"] == 2
    assert row["right_of_not_corrected"] == pytest.approx(
        (row["right"] - 1) / (len(spread.box_classes) - 1)
    )
    shares = [np.mean(table["class"] == c) for c in classes]  # of the calls left
    truth = [np.mean(spread.box_classes == j) for j in range(len(classes))]
    largest = 100 * max(abs(a - b) for a, b in zip(truth, shares, strict=True))
    assert row["share_error_points"] == pytest.approx(largest)


def test_the_loop_corrects_exactly_k_calls_and_scores_the_rest_apart(spread, tmp_path):
    from napari_chromosome_sort.classification.training.corrections import (
        CORRECTED,
        corrected_mask,
    )

    classes = spread.session.classes
    picked = least_sure_matched(spread.session, spread.truth_of, 3, "pass")
    table = correct_and_retrain(spread, picked, tmp_path / "d")
    assert int(corrected_mask(table).sum()) == 3
    assert sorted(table.loc[table[CORRECTED], "label"].astype(int)) == sorted(picked)
    for label in picked:  # each corrected call carries its box class
        assert table.loc[table["label"] == label, "class"].item() == classes[spread.truth_of[label]]
    # the prepared session itself is left uncorrected for the next run
    assert spread.session.n_corrected == 0
    assert len(list((tmp_path / "d").rglob("*.png"))) == 3  # saved as the widget saves them

    row = score_loop(table, classes, spread.truth_of, spread.box_classes, picked)
    called = dict(zip(table["label"].astype(int), table["class"], strict=True))
    rest = [label for label in spread.truth_of if label not in picked]
    right_rest = sum(called[label] == classes[spread.truth_of[label]] for label in rest)
    boxes = len(spread.box_classes)
    assert row["corrected"] == 3 and row["boxes"] == boxes
    assert row["right"] == right_rest + 3
    assert row["right_of_boxes"] == pytest.approx((right_rest + 3) / boxes)
    assert row["right_of_not_corrected"] == pytest.approx(right_rest / (boxes - 3))
    assert row["concordance_not_corrected"] == pytest.approx(right_rest / len(rest))
    # every made-up box class differs from the model's call: uncorrected it is all wrong
    before = score_loop(
        spread.session.prediction.table, classes, spread.truth_of, spread.box_classes, []
    )
    assert before["right"] == 0 and before["corrected"] == 0


def test_loop_rows_and_pooled_table(spread):
    import pandas as pd

    rows = pd.DataFrame(loop_rows(spread, ks=(2, 4), seeds=2))
    assert rows.groupby(["strategy", "k"]).size().to_dict() == {
        ("least sure", 2): 1,
        ("least sure", 4): 1,
        ("none", 0): 1,
        ("random", 2): 2,
        ("random", 4): 2,
    }
    assert (rows["corrected"] + rows["rejected"] == rows["k"]).all()
    pooled = pooled_table(rows).set_index(["strategy", "k"])
    assert pooled.loc[("random", 4), "draws"] == 2
    assert pooled.loc[("none", 0), "right_of_boxes"] == 0  # every call made wrong above
