"""Per-sample readout: intervals, tests (power and false-positive rate), agreement, plots, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.analysis import plots, readout, spreads
from napari_chromosome_sort.analysis.confusion import Confusion, correct_shares, fit_p
from napari_chromosome_sort.analysis.confusion import confusion_from_metadata as load_from_metadata
from napari_chromosome_sort.errors import ChromosortError


def _sample(dist, n, name, rng, spreads=5):
    calls = rng.choice(list(dist), size=n, p=list(dist.values()))
    return pd.DataFrame(
        {"sample": name, "class": calls, "spread": [f"{name}{i % spreads}" for i in range(n)]}
    )


def test_wilson_interval_known_values():
    lo, hi = readout.wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    np.testing.assert_allclose(lo, [0.0, 0.2366, 0.7225], atol=1e-3)
    np.testing.assert_allclose(hi, [0.2775, 0.7634, 1.0], atol=1e-3)
    lo, hi = readout.wilson_interval(0, 0)
    assert (lo, hi) == (0.0, 1.0)


def test_wilson_coverage():
    rng = np.random.default_rng(1)
    k = rng.binomial(60, 0.1, size=4000)
    lo, hi = readout.wilson_interval(k, 60)
    coverage = ((lo <= 0.1) & (hi >= 0.1)).mean()
    assert 0.92 < coverage < 0.98


def test_summarize_counts_percent_and_spreads():
    table = pd.DataFrame(
        {
            "sample": ["s1"] * 4 + ["s2"] * 2 + ["s2"],
            "spread": ["a", "a", "b", "b", "c", "c", "c"],
            "class": ["A", "B", "A", "A", "C", "C", np.nan],
        }
    )
    summary = readout.summarize(table, classes=["A", "B", "C"])
    s1 = summary[summary["sample"] == "s1"].set_index("class")
    assert s1.loc["A", "count"] == 3 and s1.loc["A", "n"] == 4
    assert s1.loc["A", "percent"] == pytest.approx(75)
    assert s1.loc["A", "spread_mean"] == pytest.approx(75)  # (50 + 100) / 2
    assert s1.loc["A", "spread_sd"] == pytest.approx(np.std([50, 100], ddof=1))
    assert s1.loc["C", "count"] == 0 and s1.loc["C", "ci_low"] == 0
    s2 = summary[summary["sample"] == "s2"].set_index("class")
    assert s2.loc["C", "n"] == 2  # unclassified row ignored
    with pytest.raises(ChromosortError, match="lacks column"):
        readout.summarize(table.rename(columns={"class": "cls"}))


def test_summarize_estimated_distribution_from_probabilities():
    """With p_<class> columns the summary adds the expected share (mean probability) per
    sample and per spread; chromatid-pair calls count wholly for their class; tables without
    the columns keep the former columns only."""
    table = pd.DataFrame(
        {
            "sample": ["s1"] * 4,
            "spread": ["a", "a", "b", "b"],
            "class": ["A", "A", "B", "C"],
            "called_by": ["model", "model", "model", "chromatid pair"],
            "p_A": [0.6, 0.8, 0.3, 0.5],
            "p_B": [0.4, 0.2, 0.7, 0.5],
            "p_C": [0.0, 0.0, 0.0, 0.0],
        }
    )
    full = readout.summarize(table, classes=["A", "B", "C"])
    s1 = full.set_index("class")
    assert s1.loc["A", "percent"] == pytest.approx(50)  # the calls
    assert s1.loc["A", "est_percent"] == pytest.approx(100 * (0.6 + 0.8 + 0.3) / 4)
    assert s1.loc["C", "est_percent"] == pytest.approx(25)  # the pair-rule object
    assert s1.loc["A", "spread_est_mean"] == pytest.approx(100 * (0.7 + 0.15) / 2)
    assert s1.loc["A", "spread_est_sd"] == pytest.approx(100 * np.std([0.7, 0.15], ddof=1))
    assert np.isclose(s1["est_percent"].sum(), 100)
    plain = readout.summarize(table.drop(columns=["p_C"]), classes=["A", "B", "C"])
    assert "est_percent" not in plain.columns and "spread_est_mean" not in plain.columns
    assert list(plain.columns) == [c for c in full.columns if "_est" not in c and "est_" not in c]
    assert list(full.columns[: len(plain.columns)]) == list(plain.columns)  # columns added


def test_planted_paper_shift_detected():
    rng = np.random.default_rng(0)
    wt = {k: v for k, v in readout.PAPER_DISTRIBUTIONS["WT"].items()}
    mut = {k: v for k, v in readout.PAPER_DISTRIBUTIONS["CTF18-/-"].items()}
    table = pd.concat([_sample(wt, 150, "WT", rng), _sample(mut, 150, "KO", rng)])
    comp = readout.compare_samples(table, "WT", "KO")
    assert comp.significant and comp.p_value < 1e-4
    assert 0.25 < comp.cramers_v < 0.6
    assert "differ in" in comp.sentence and "Cramér's V" in comp.sentence
    assert comp.test == "chi-square"
    perm = readout.compare_samples(table, "WT", "KO", method="permutation", n_permutations=2000)
    assert perm.p_value < 0.001 and perm.statistic == pytest.approx(comp.statistic)


def test_false_positive_rate_near_alpha():
    rng = np.random.default_rng(3)
    wt = readout.PAPER_DISTRIBUTIONS["WT"]
    classes = list(wt)
    pvals = []
    for _ in range(400):
        a = rng.multinomial(120, list(wt.values()))
        b = rng.multinomial(120, list(wt.values()))
        pvals.append(readout.compare_counts(a, b, classes, method="chi2").p_value)
    rate = np.mean(np.asarray(pvals) < 0.05)
    assert 0.02 < rate < 0.09


def test_small_counts_use_permutation_and_match_chi2_order():
    comp = readout.compare_counts([5, 2, 0], [1, 4, 3], ["A", "B", "C"], seed=1)
    assert comp.test.startswith("permutation")
    assert 0 < comp.p_value <= 1
    same = readout.compare_counts([5, 2, 0], [5, 2, 0], ["A", "B", "C"], method="permutation")
    assert same.p_value > 0.9 and not same.significant
    with pytest.raises(ChromosortError):
        readout.compare_counts([0, 0, 0], [1, 2, 3], ["A", "B", "C"])
    one = readout.compare_counts([3, 0], [4, 0], ["A", "B"])
    assert one.p_value == 1.0


def test_compare_all_pairs_and_reference():
    rng = np.random.default_rng(0)
    d = readout.PAPER_DISTRIBUTIONS["WT"]
    table = pd.concat([_sample(d, 50, s, rng) for s in ("x", "y", "z")])
    assert [(c.sample_a, c.sample_b) for c in readout.compare_all(table)] == [
        ("x", "y"),
        ("x", "z"),
    ]
    assert len(readout.compare_all(table, reference="all")) == 3
    row = readout.compare_all(table)[0].as_dict()
    assert {"share_a_A", "difference_A", "low_A", "high_A", "chromosomes_p_value"} <= set(row)


def test_agreement_kappa_matches_sklearn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    truth = rng.choice(list("ABC"), 200)
    noisy = np.where(rng.random(200) < 0.2, rng.choice(list("ABC"), 200), truth)
    other = np.where(rng.random(200) < 0.4, rng.choice(list("ABC"), 200), truth)
    labels = pd.DataFrame({"r1": truth, "r2": noisy, "r3": other})
    labels.loc[0, "r3"] = np.nan
    conc, kappa = readout.agreement(labels)
    assert kappa.loc["r1", "r2"] == pytest.approx(cohen_kappa_score(truth, noisy))
    assert conc.loc["r1", "r2"] == pytest.approx((truth == noisy).mean())
    assert kappa.loc["r1", "r2"] > kappa.loc["r1", "r3"]
    assert (np.diag(kappa) == 1).all() and (kappa == kappa.T).all().all()
    long = labels.reset_index().melt(id_vars="index", var_name="annotator", value_name="class")
    wide = readout.agreement_from_long(long, item_col="index")
    assert wide.shape == (200, 3)


def test_plots_render(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.concat(
        [_sample(readout.PAPER_DISTRIBUTIONS[k], 80, k, rng) for k in readout.PAPER_DISTRIBUTIONS]
    )
    summary = readout.summarize(table)
    comps = readout.compare_all(table)
    files = plots.save_figure(plots.stacked_bar(summary, comparisons=comps), tmp_path / "bar")
    assert [f.suffix for f in files] == [".png", ".svg"] and all(
        f.stat().st_size > 1000 for f in files
    )
    cm = plots.confusion_matrix_plot({"counts": [[5, 1], [2, 7]]}, ["a", "b"])
    lc = plots.learning_curve_plot({"n_train": [10, 20, 40], "accuracy": [0.5, 0.6, 0.7]})
    conc, kappa = readout.agreement(pd.DataFrame({"a": list("ABCA"), "b": list("ABCC")}))
    ag = plots.agreement_plot(kappa, conc)
    for name, fig in {"cm": cm, "lc": lc, "ag": ag}.items():
        assert plots.save_figure(fig, tmp_path / name, ("png",))[0].is_file()


def test_readout_cli_folder_and_table(tmp_path, wt_crops_dir):
    import json

    from napari_chromosome_sort.cli import main

    assert main(["readout", str(wt_crops_dir), "--out", str(tmp_path / "one")]) == 0
    summary = pd.read_csv(tmp_path / "one" / "summary.csv")
    assert summary.set_index("class").loc["a", "count"] == 416
    rng = np.random.default_rng(0)
    table = pd.concat(
        [_sample(readout.PAPER_DISTRIBUTIONS[k], 100, k, rng) for k in readout.PAPER_DISTRIBUTIONS]
    )
    table.to_csv(tmp_path / "calls.csv", index=False)
    pd.DataFrame({"file": range(4), "ann1": list("ABCA"), "ann2": list("ABCC")}).to_csv(
        tmp_path / "ann.csv", index=False
    )
    out = tmp_path / "two"
    args = ["readout", str(tmp_path / "calls.csv"), "--out", str(out)]
    assert main([*args, "--agreement", str(tmp_path / "ann.csv")]) == 0
    for name in (
        "summary.csv",
        "comparisons.csv",
        "stats.txt",
        "stacked_bar.png",
        "stacked_bar.svg",
        "kappa.csv",
        "agreement.png",
    ):
        assert (out / name).is_file(), name
    stats_text = (out / "stats.txt").read_text()
    assert "differ in" in stats_text and "permutation test over spreads" in stats_text
    assert "Classifier error not included" in stats_text
    assert (out / "spreads.csv").is_file()
    report = {
        "classes": ["A", "B", "C"],
        "confusion": {"counts": [[30, 5, 1], [4, 20, 3], [0, 2, 6]]},
    }
    (tmp_path / "cv.json").write_text(json.dumps(report))
    assert main([*args, "--confusion", str(tmp_path / "cv.json")]) == 0
    assert (
        "Classifier error included: classifier error from cv.json"
        in (out / "stats.txt").read_text()
    )
    assert {"adjusted_percent", "adjusted_low"} <= set(pd.read_csv(out / "summary.csv"))
    assert "adjusted_high" in pd.read_csv(out / "spreads.csv")
    report = {"classes": ["a", "b"], "confusion": {"counts": [[5, 1], [2, 7]]}, "accuracy": 0.8}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    curve = [
        {"per_class": m, "n_train": 2 * m, "accuracy": 0.5 + m / 100, "sd": 0.1}
        for m in (5, 10, 20)
    ]
    (tmp_path / "curve.json").write_text(json.dumps(curve))
    metrics = ["--metrics", str(tmp_path / "eval.json"), "--metrics", str(tmp_path / "curve.json")]
    assert main([*args, *metrics]) == 0
    for name in (
        "eval_confusion.png",
        "eval_confusion.svg",
        "eval_confusion.csv",
        "curve_learning_curve.png",
        "curve_learning_curve.csv",
    ):
        assert (out / name).is_file(), name
    assert main([*args, "--class-col", "nope"]) == 2


@pytest.mark.parametrize("command", ["batch", "readout", "sort"])
def test_cli_help(command, capsys):
    from napari_chromosome_sort.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def _spread(sample, name, shares, n):
    """A spread of exactly ``n`` calls in the given shares (A, B, C)."""
    counts = np.round(np.asarray(shares) * n).astype(int)
    counts[0] += n - counts.sum()
    calls = np.repeat(["A", "B", "C"], counts)
    return pd.DataFrame({"sample": sample, "spread": name, "class": calls})


def _discordant():
    """Two samples of two discordant spreads each: WT 10 % / 50 % C, mutant 30 % / 70 % C."""
    return pd.concat(
        [
            _spread("WT", "w1", [0.45, 0.45, 0.10], 100),
            _spread("WT", "w2", [0.25, 0.25, 0.50], 100),
            _spread("mutant", "m1", [0.35, 0.35, 0.30], 100),
            _spread("mutant", "m2", [0.15, 0.15, 0.70], 100),
        ],
        ignore_index=True,
    )


def _dirichlet_spreads(dist, m, n, name, rng, concentration=None):
    """``m`` spreads of ``n`` calls; each spread's shares drawn around ``dist`` (Dirichlet of
    the given concentration: smaller = spreads differ more) or exactly ``dist`` (None)."""
    p = np.asarray(list(dist.values()))
    frames = []
    for i in range(m):
        q = p if concentration is None else rng.dirichlet(p * concentration)
        calls = rng.choice(list(dist), size=n, p=q)
        frames.append(pd.DataFrame({"sample": name, "spread": f"{name}{i}", "class": calls}))
    return pd.concat(frames, ignore_index=True)


def test_discordant_two_by_two_is_not_called_different():
    comp = readout.compare_all(_discordant(), classes=["A", "B", "C"])[0]
    assert comp.replicates == "spreads" and (comp.n_spreads_a, comp.n_spreads_b) == (2, 2)
    assert not comp.significant and comp.p_value >= 1 / 3
    assert comp.smallest_p == pytest.approx(1 / 3)
    assert "no p below 0.33 is possible" in comp.sentence
    # the per-chromosome test would call it: shown, but only as the labelled secondary figure
    assert comp.secondary.p_value < 0.001
    assert "Secondary, chromosomes as replicates" in comp.sentence
    c = comp.effects.set_index("share").loc["C"]
    assert c["difference"] == pytest.approx(20.0)
    assert c["low"] < 0 < c["high"]  # the interval over spreads holds no difference


def test_planted_shift_over_spreads_is_detected():
    rng = np.random.default_rng(0)
    table = pd.concat(
        [
            _dirichlet_spreads(readout.PAPER_DISTRIBUTIONS["WT"], 5, 40, "WT", rng),
            _dirichlet_spreads(readout.PAPER_DISTRIBUTIONS["CTF18-/-"], 5, 40, "KO", rng),
        ]
    )
    comp = readout.compare_all(table)[0]
    assert comp.significant and comp.p_value == pytest.approx(2 / 252)
    assert "differ in type distribution" in comp.sentence
    open_row = comp.effects.set_index("share").loc["B+C (open)"]
    assert open_row["low"] > 10  # the open share rises, with an interval clear of zero
    assert comp.as_dict()["difference_A"] < 0 and "chromosomes_p_value" in comp.as_dict()


def test_null_halves_over_spreads_keep_false_alarms_at_alpha():
    """Two samples of the same distribution whose spreads differ (as real spreads do): the
    spread test flags <= 5 % (+ sampling slack); the per-chromosome chi-square flags far more."""
    rng = np.random.default_rng(1)
    wt = readout.PAPER_DISTRIBUTIONS["WT"]
    spread_p, chromosome_p = [], []
    for _ in range(120):
        table = pd.concat(
            [
                _dirichlet_spreads(wt, 5, 40, "x", rng, concentration=10),
                _dirichlet_spreads(wt, 5, 40, "y", rng, concentration=10),
            ]
        )
        comp = readout.compare_all(table, classes=list(wt))[0]
        spread_p.append(comp.p_value)
        chromosome_p.append(comp.secondary.p_value)
    assert np.mean(np.asarray(spread_p) < 0.05) <= 0.08
    assert np.mean(np.asarray(chromosome_p) < 0.05) > 0.2


def test_permutation_exact_and_random_agree():
    rng = np.random.default_rng(2)
    a = rng.multinomial(40, [0.6, 0.3, 0.1], size=6)
    b = rng.multinomial(40, [0.4, 0.4, 0.2], size=6)
    stat, p_exact, how = spreads.permutation_over_spreads(a, b)
    assert how.startswith("exact") and "924" in how
    old, spreads.MAX_EXACT = spreads.MAX_EXACT, 10
    try:
        stat_mc, p_mc, how_mc = spreads.permutation_over_spreads(a, b, 4000, seed=3)
    finally:
        spreads.MAX_EXACT = old
    assert stat_mc == pytest.approx(stat) and "random" in how_mc
    assert abs(p_mc - p_exact) < 0.03
    assert spreads.smallest_p(2, 2) == pytest.approx(1 / 3)
    assert spreads.smallest_p(3, 3) == pytest.approx(0.1)
    assert spreads.smallest_p(1, 1) == 1.0


def test_corrected_shares_recover_a_planted_truth():
    """Calls made through a known confusion: the corrected shares find the true ones, the raw
    call shares do not, and the interval, which carries the confusion's own uncertainty, holds
    the truth also when the confusion comes from few training crops."""
    rng = np.random.default_rng(4)
    truth = np.array([0.2, 0.3, 0.5])
    rates = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.35, 0.6]])
    frames = []
    for i in range(8):
        true = rng.choice(3, size=500, p=truth)
        called = (rng.random((500, 1)) > np.cumsum(rates[true], 1)).sum(1)
        calls = np.array(list("ABC"))[called]
        frames.append(pd.DataFrame({"sample": "s", "spread": f"s{i}", "class": calls}))
    table = pd.concat(frames, ignore_index=True)
    for per_class, tolerance in ((20000, 0.03), (300, None)):
        training = np.array([rng.multinomial(per_class, r) for r in rates])
        confusion = Confusion(["A", "B", "C"], training, "planted")
        summary = readout.summarize(table, classes=["A", "B", "C"], confusion=confusion)
        row = summary.set_index("class")
        raw_error = np.abs(row["percent"].to_numpy() / 100 - truth).max()
        assert raw_error > 0.1
        if tolerance:
            assert np.abs(row["adjusted_percent"].to_numpy() / 100 - truth).max() < tolerance
        assert (row["adjusted_low"] / 100 <= truth).all()
        assert (row["adjusted_high"] / 100 >= truth).all()
    # exact inversion where it is inside the simplex
    np.testing.assert_allclose(correct_shares(truth @ rates, rates), truth, atol=1e-3)
    # a call share no truth can give is projected onto the simplex, not past it
    pi = correct_shares(np.array([0.0, 0.0, 1.0]), rates)
    assert pi.min() >= 0 and pi.sum() == pytest.approx(1) and pi[2] == pytest.approx(1, abs=0.01)


def test_intervals_stay_within_bounds():
    rng = np.random.default_rng(5)
    confusion = Confusion(["A", "B", "C"], [[50, 5, 0], [5, 30, 5], [0, 2, 3]], "small")
    table = pd.concat(
        [
            _dirichlet_spreads({"A": 0.98, "B": 0.01, "C": 0.01}, 3, 15, "x", rng, 5),
            _dirichlet_spreads({"A": 0.05, "B": 0.05, "C": 0.9}, 2, 10, "y", rng, 5),
        ]
    )
    summary = readout.summarize(table, classes=["A", "B", "C"], confusion=confusion)
    for low, high in (("ci_low", "ci_high"), ("share_low", "share_high")):
        assert (summary[low] >= 0).all() and (summary[high] <= 100).all()
        assert (summary[low] <= summary["percent"] + 1e-9).all()
        assert (summary[high] >= summary["percent"] - 1e-9).all()
    assert (summary["adjusted_low"] >= 0).all() and (summary["adjusted_high"] <= 100).all()
    assert (summary["adjusted_low"] <= summary["adjusted_percent"] + 1e-9).all()
    per = readout.spread_summary(table, classes=["A", "B", "C"], confusion=confusion)
    assert len(per) == 5 * 3 and (per["adjusted_high"] <= 100).all()
    assert (per["adjusted_low"] >= 0).all()
    effects = readout.compare_all(table, classes=["A", "B", "C"], confusion=confusion)[0].effects
    for col in ("low", "high", "adjusted_low", "adjusted_high"):
        assert effects[col].between(-100, 100).all()


def test_confusion_from_the_model_and_reports(tmp_path):
    import json

    meta = {
        "classes": ["A", "B", "C"],
        "training": {
            "chosen": {
                "calibration": {
                    # rows = call, columns = true (mean probability), as training stores it
                    "confusion": [[0.5, 0.1, 0.0], [0.1, 0.2, 0.05], [0.0, 0.0, 0.05]],
                    "n": 100,
                }
            }
        },
    }
    soft = load_from_metadata(meta)
    assert soft.soft and soft.counts.sum(1) == pytest.approx([60, 30, 10])
    assert soft.rates[0] == pytest.approx([5 / 6, 1 / 6, 0])
    assert load_from_metadata({"classes": ["A", "B"], "metrics": {}}) is None
    hard = load_from_metadata(
        {"classes": ["A", "B"], "metrics": {"confusion": {"counts": [[8, 2], [1, 9]]}}}
    )
    assert not hard.soft and hard.accuracy == pytest.approx(0.85)
    assert soft.aligned(["c", "a", "b"]).counts[0] == pytest.approx([5, 0, 5])  # C: c, a, b
    assert soft.aligned(["A", "B"]) is None
    report = {"classes": ["a", "b"], "confusion": {"counts": [[16, 4], [2, 18]]}, "n": 20}
    (tmp_path / "cv.json").write_text(json.dumps(report))
    from napari_chromosome_sort.analysis.confusion import load_confusion

    scaled = load_confusion(tmp_path / "cv.json")
    assert scaled.counts.sum() == pytest.approx(20)  # two repeats count once
    # a soft confusion corrects probabilities: without p_ columns it is not used, and says so
    table = _discordant()
    comp = readout.compare_all(table, classes=["A", "B", "C"], confusion=soft)[0]
    assert "Classifier error not included" in comp.sentence and "p_<class>" in comp.sentence
    for cls, p in zip("ABC", ([0.7, 0.2, 0.1]), strict=True):
        table[f"p_{cls}"] = p
    comp = readout.compare_all(table, classes=["A", "B", "C"], confusion=soft)[0]
    assert "Classifier error included" in comp.sentence and "adjusted_low" in comp.effects
    with pytest.raises(ChromosortError, match="not the calls' classes"):
        readout.compare_all(table, classes=["A", "B", "C"], confusion=hard)


def test_hand_corrections_and_tables_without_spreads():
    table = _discordant()
    table["corrected"] = False
    table.loc[:4, "corrected"] = True
    comp = readout.compare_all(table, classes=["A", "B", "C"])[0]
    assert (comp.hand_corrected_a, comp.hand_corrected_b) == (5, 0)
    assert "Calls corrected by hand: WT: 5 of 200; mutant: 0 of 200." in comp.sentence
    summary = readout.summarize(table, classes=["A", "B", "C"])
    assert summary.set_index("sample")["n_hand_corrected"].to_dict() == {"WT": 5, "mutant": 0}
    plain = readout.compare_all(table.drop(columns=["spread", "corrected"]))[0]
    assert plain.replicates == "chromosomes" and plain.significant
    assert "No spread column" in plain.sentence


def test_plot_states_the_test_and_keeps_whiskers_inside_100():
    rng = np.random.default_rng(6)
    table = pd.concat(
        [
            _dirichlet_spreads({"A": 0.97, "B": 0.02, "C": 0.01}, 3, 20, "WT", rng, 20),
            _dirichlet_spreads({"A": 0.5, "B": 0.3, "C": 0.2}, 3, 20, "KO", rng, 20),
        ]
    )
    confusion = Confusion(["A", "B", "C"], [[40, 8, 2], [6, 30, 4], [1, 4, 5]], "small")
    summary = readout.summarize(table, classes=["A", "B", "C"], confusion=confusion)
    comps = readout.compare_all(table, classes=["A", "B", "C"], confusion=confusion)
    per = readout.spread_summary(table, classes=["A", "B", "C"], confusion=confusion)
    fig = plots.stacked_bar(summary, comparisons=comps, spreads=per)
    ax = fig.axes[0]
    title = " ".join(ax.get_title(loc="left").split())
    assert "permutation test over spreads" in title and "3 vs 3 spreads" in title
    assert "60 vs 60 chromosomes" in title and "classifier's error" in title
    for collection in ax.collections:  # the whiskers
        for segment in collection.get_segments():
            assert segment[:, 1].min() >= -1e-9 and segment[:, 1].max() <= 100 + 1e-9
    assert "3 spreads, 60 chr." in ax.get_xticklabels()[0].get_text()


def test_confusion_fit_flags_calls_the_model_cannot_make():
    """Calls a confusion explains fit (p = 1 inside the simplex); calls it cannot produce (more
    B than any true type gives) are flagged, per spread and in the sentence."""
    rates = np.array([[0.8, 0.15, 0.05], [0.3, 0.6, 0.1], [0.2, 0.5, 0.3]])
    plausible = np.array([0.3, 0.5, 0.2]) @ rates * 200
    assert fit_p(plausible, rates, correct_shares(plausible, rates)) == 1.0
    impossible = np.array([10.0, 180.0, 10.0])  # 90 % B: no truth gives more than 60 %
    assert fit_p(impossible, rates, correct_shares(impossible, rates)) < 1e-6
    confusion = Confusion(["A", "B", "C"], rates * 1000, "planted")
    table = pd.concat(
        [
            _spread("WT", "w1", [0.05, 0.9, 0.05], 200),
            _spread("WT", "w2", [0.4, 0.45, 0.15], 200),
            _spread("mutant", "m1", [0.4, 0.45, 0.15], 200),
            _spread("mutant", "m2", [0.35, 0.5, 0.15], 200),
        ]
    )
    per = readout.spread_summary(table, confusion=confusion).drop_duplicates("spread")
    assert per.set_index("spread")["confusion_fit_p"].lt(0.05).to_dict() == {
        "w1": True,
        "w2": False,
        "m1": False,
        "m2": False,
    }
    summary = readout.summarize(table, confusion=confusion).drop_duplicates("sample")
    assert summary.set_index("sample")["spreads_misfit"].to_dict() == {"WT": 1, "mutant": 0}
    sentence = readout.compare_all(table, confusion=confusion)[0].sentence
    assert "cannot explain the calls of 1 of 2 spreads of WT" in sentence
    assert "spreads of mutant" not in sentence
    lines = readout.sample_lines(readout.summarize(table, confusion=confusion))
    assert "cannot explain the calls of 1 of its spreads" in lines[0]
    assert "cannot explain" not in lines[1]
    fig = plots.stacked_bar(readout.summarize(table, confusion=confusion))
    assert "not to be trusted" in fig.axes[0].get_title(loc="left")
