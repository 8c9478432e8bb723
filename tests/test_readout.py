"""Per-sample readout: intervals, tests (power and false-positive rate), agreement, plots, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.analysis import plots, readout
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
    assert "percent_a_A" in readout.compare_all(table)[0].as_dict()


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
    assert (
        main(
            [
                "readout",
                str(tmp_path / "calls.csv"),
                "--out",
                str(out),
                "--agreement",
                str(tmp_path / "ann.csv"),
            ]
        )
        == 0
    )
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
    assert "differ in" in (out / "stats.txt").read_text()
    import json

    report = {"classes": ["a", "b"], "confusion": {"counts": [[5, 1], [2, 7]]}, "accuracy": 0.8}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    curve = [
        {"per_class": m, "n_train": 2 * m, "accuracy": 0.5 + m / 100, "sd": 0.1}
        for m in (5, 10, 20)
    ]
    (tmp_path / "curve.json").write_text(json.dumps(curve))
    assert (
        main(
            [
                "readout",
                str(tmp_path / "calls.csv"),
                "--out",
                str(out),
                "--metrics",
                str(tmp_path / "eval.json"),
                "--metrics",
                str(tmp_path / "curve.json"),
            ]
        )
        == 0
    )
    for name in (
        "eval_confusion.png",
        "eval_confusion.svg",
        "eval_confusion.csv",
        "curve_learning_curve.png",
        "curve_learning_curve.csv",
    ):
        assert (out / name).is_file(), name
    assert (
        main(["readout", str(tmp_path / "calls.csv"), "--out", str(out), "--class-col", "nope"])
        == 2
    )


@pytest.mark.parametrize("command", ["batch", "readout", "sort"])
def test_cli_help(command, capsys):
    from napari_chromosome_sort.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def test_compare_spreads_counts_each_spread_once():
    rng = np.random.default_rng(0)
    wt = readout.PAPER_DISTRIBUTIONS["WT"]
    mut = readout.PAPER_DISTRIBUTIONS["CTF18-/-"]
    table = pd.concat([_sample(wt, 300, "WT", rng, spreads=8), _sample(mut, 300, "KO", rng, 8)])
    res = readout.compare_spreads(table, "WT", "KO").set_index("class")
    assert res.loc["A", "n_spreads_a"] == 8 and res.loc["A", "p_value"] < 0.01
    assert res.loc["A", "mean_a"] > res.loc["A", "mean_b"]
    one = readout.compare_spreads(table[table["spread"].isin(["WT0", "KO0"])], "WT", "KO")
    assert one["p_value"].isna().all()
