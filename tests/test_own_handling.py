"""The own-labels protocol's handling of a held-out spread's calls (``validation.own_handling``):
per-spread prior adaptation and the WT ensemble, chosen on the other spreads only."""

from __future__ import annotations

import numpy as np
from validation.own_handling import UNHANDLED, choose, handled_calls
from validation.own_labels import OwnLabelsData, SpreadSet


def _b_rich(n: int = 40, unsure: int = 10):
    """Posteriors of a spread of ``n`` B chromosomes: ``unsure`` of them read 0.45 A / 0.4 B,
    the others clearly B."""
    p = np.tile([0.05, 0.9, 0.05], (n, 1))
    p[:unsure] = [0.45, 0.40, 0.15]
    return p


def test_adaptation_calls_the_unsure_objects_of_a_b_rich_spread_b():
    p, parts = _b_rich(), np.ones(40, int)
    plain = handled_calls(p, p, parts, UNHANDLED)
    assert (plain[:10] == 0).all() and (plain[10:] == 1).all()
    adapted = handled_calls(p, p, parts, (0.0, 1.0))
    assert (adapted == 1).all()  # the spread's own mix, estimated without labels, is all B
    # a prior held at equal shares by many pseudo-counts changes nothing
    assert (handled_calls(p, p, parts, (0.0, 1e6)) == plain).all()


def test_ensemble_weight_and_chromatid_pairs():
    own = np.tile([0.2, 0.7, 0.1], (4, 1))
    wt = np.tile([0.8, 0.1, 0.1], (4, 1))
    parts = np.array([1, 1, 1, 2])
    assert handled_calls(own, wt, parts, (0.0, None)).tolist() == [1, 1, 1, 2]
    assert handled_calls(own, wt, parts, (1.0, None)).tolist() == [0, 0, 0, 2]
    assert handled_calls(own, wt, parts, (0.75, None)).tolist() == [0, 0, 0, 2]
    assert handled_calls(own, wt, parts, (0.25, None)).tolist() == [1, 1, 1, 2]


def _data_and_probas(held_truth: int):
    """Three B-rich spreads whose unsure objects adaptation fixes; spread 0's boxes say
    ``held_truth``. Every kept object matches its own box."""
    spreads, probas = [], {"wt": []}
    for j in range(3):
        truth = np.full(40, held_truth if j == 0 else 1)
        spreads.append(
            SpreadSet(
                f"{j}.png",
                np.zeros((40, 1, 2)),
                truth,
                np.ones(40, int),
                truth,
                {i: i for i in range(40)},
            )
        )
        probas["wt"].append(_b_rich())
    for held in range(3):
        for inner in range(3):
            probas[held, None if inner == held else inner] = _b_rich()
    return OwnLabelsData(np.zeros((0, 1, 2)), np.zeros(0, int), spreads), probas


def test_the_choice_never_reads_the_held_out_spread():
    handlings = (UNHANDLED, (0.0, 1.0))
    data, probas = _data_and_probas(held_truth=1)
    assert choose(data, probas, 0, handlings) == (0.0, 1.0)  # better on spreads 1 and 2
    # the held-out spread's boxes say otherwise: the choice is the same
    data, probas = _data_and_probas(held_truth=0)
    assert choose(data, probas, 0, handlings) == (0.0, 1.0)
    # when spread 1 is held out, spread 0 (all A here) is an inner spread and flips the choice
    assert choose(data, probas, 1, handlings) == UNHANDLED
