"""Batch runs: real spreads, local vs Dask cluster give the same table, interrupted runs resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.batch import DONE, find_spreads, run_batch
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import run_to_end


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    """A real classifier built with the classifier API, weights="random" (explicitly)."""
    import torch

    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models import model_io
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        squeezenet_conv_head,
    )

    torch.manual_seed(0)
    model = ChromosomeClassifier(
        build_backbone("squeezenet1_1", "random"),
        squeezenet_conv_head(3),
        ["A", "B", "C"],
        Preprocessing(size=64),
        "squeezenet_conv",
    )
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    model_io.save_model(model, path)
    return path


@pytest.fixture(scope="module")
def spread_tree(tmp_path_factory, dapi_dir) -> Path:
    """Two samples of real DAPI spreads (K.tif truth files mixed in, to be excluded)."""
    root = tmp_path_factory.mktemp("spreads")
    for sample, names in {"wt": ["A0101XYD.tif", "A0101XYK.tif"], "mut": ["A0102XYD.tif"]}.items():
        (root / sample).mkdir()
        for name in names:
            shutil.copy(dapi_dir / "A01__XY" / name, root / sample / name)
    return root


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    table = table.drop(columns=["image"]).sort_values(["sample", "spread", "label"])
    return table.reset_index(drop=True)


def test_find_spreads(spread_tree, tmp_path):
    jobs = find_spreads(spread_tree, tmp_path / "out", exclude=("*K.tif",))
    assert sorted((j.sample, j.stem) for j in jobs) == [("mut", "A0102XYD"), ("wt", "A0101XYD")]
    with pytest.raises(ChromosortError):
        find_spreads(tmp_path / "nothing", tmp_path / "out")


def test_batch_local_dask_and_resume(spread_tree, random_model, tmp_path):
    from distributed import LocalCluster

    kw = dict(exclude=("*K.tif",), formats=("png",))
    # 1. reference run in this process
    local = run_to_end(run_batch(spread_tree, random_model, tmp_path / "local", "serial", **kw))
    assert local.n_spreads == 2 and local.n_failed == 0
    objects = pd.read_csv(tmp_path / "local" / "objects.csv")
    assert {"sample", "spread", "label", "status", "class", "p_A", "p_B", "p_C"} <= set(objects)
    classified = objects[objects["class"].notna()]
    assert len(classified) > 10
    np.testing.assert_allclose(classified[["p_A", "p_B", "p_C"]].sum(1), 1, atol=1e-4)
    for name in ("summary.csv", "stats.txt", "stacked_bar.png"):
        assert (tmp_path / "local" / name).is_file()
    summary = pd.read_csv(tmp_path / "local" / "summary.csv")
    assert set(summary["sample"]) == {"wt", "mut"}
    for spread in ("wt/A0101XYD", "mut/A0102XYD"):
        d = tmp_path / "local" / "spreads" / spread
        assert (d / DONE).is_file() and (d / "gradcam.npy").is_file()
        cost = json.loads((d / DONE).read_text())["cost"]  # what the spread cost its process
        assert cost["wall_s"] > 0 and cost["user_s"] + cost["kernel_s"] > 0

    # 2. the same on a Dask distributed cluster reached by address (127.0.0.1 only)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        remote = run_to_end(
            run_batch(spread_tree, random_model, tmp_path / "dask", cluster.scheduler_address, **kw)
        )
    assert remote.n_failed == 0
    pd.testing.assert_frame_equal(
        _sorted(pd.read_csv(tmp_path / "dask" / "objects.csv")), _sorted(objects), rtol=1e-4
    )

    # 3. interrupted run: stop after the first spread, leave a half-written spread behind
    out = tmp_path / "resume"
    steps = run_batch(spread_tree, random_model, out, "serial", **kw)
    next(steps)  # "0 done, 2 to run"
    next(steps)  # first spread finished
    steps.close()  # the user pressed Ctrl-C
    done = sorted(p.parent.name for p in (out / "spreads").glob(f"*/*/{DONE}"))
    assert len(done) == 1 and not (out / "objects.csv").exists()
    leftover = out / "spreads" / "x" / ".half.tmp-1234"
    leftover.mkdir(parents=True)
    resumed = run_to_end(run_batch(spread_tree, random_model, out, "serial", **kw))
    assert resumed.n_skipped == 1 and resumed.n_spreads == 2
    assert not leftover.exists()
    pd.testing.assert_frame_equal(
        _sorted(pd.read_csv(out / "objects.csv")), _sorted(objects), rtol=1e-4
    )

    # 4. a lost done-marker means that spread is redone, nothing else
    (out / "spreads" / "mut" / "A0102XYD" / DONE).unlink()
    again = run_to_end(run_batch(spread_tree, random_model, out, "serial", **kw))
    assert again.n_skipped == 1
    assert len(pd.read_csv(out / "objects.csv")) == len(objects)

    # 5. a changed model file invalidates finished spreads: everything is recomputed
    import os

    st = os.stat(random_model)
    os.utime(random_model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    redone = run_to_end(run_batch(spread_tree, random_model, out, "serial", **kw))
    assert redone.n_skipped == 0 and redone.n_spreads == 2


def test_batch_cli_errors(tmp_path, random_model):
    from napari_chromosome_sort.cli import main

    assert (
        main(
            [
                "batch",
                str(tmp_path / "none"),
                "--model",
                str(random_model),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    (tmp_path / "in").mkdir()
    assert (
        main(
            [
                "batch",
                str(tmp_path / "in"),
                "--model",
                str(tmp_path / "no.safetensors"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )


def test_batch_settings_reach_every_spread(spread_tree, random_model, tmp_path):
    """Segmentation parameters and prior options are used and fingerprinted: changing one
    recomputes the finished spreads; bad prior options fail before any spread is run."""
    from napari_chromosome_sort.classification.predict import PriorOptions
    from napari_chromosome_sort.cli import main
    from napari_chromosome_sort.segmentation import SegmentationParams

    out = tmp_path / "out"
    kw = dict(exclude=("*K.tif",), formats=("png",))
    base = run_to_end(run_batch(spread_tree, random_model, out, "serial", **kw))
    assert base.n_spreads == 2 and base.n_skipped == 0
    same = run_to_end(
        run_batch(spread_tree, random_model, out, "serial", priors=PriorOptions(), **kw)
    )
    assert same.n_skipped == 2  # the defaults spelled out are the defaults
    adapted = PriorOptions(adapt=True, pseudo_counts=0.0)
    ml = run_to_end(run_batch(spread_tree, random_model, out, "serial", priors=adapted, **kw))
    assert ml.n_skipped == 0  # another prior setting: recomputed
    scored = SegmentationParams(crossing_score="auto")
    score = run_to_end(
        run_batch(spread_tree, random_model, out, "serial", params=scored, priors=adapted, **kw)
    )
    assert score.n_skipped == 0
    by_score = score.objects["reason"].astype(str).str.startswith("crossing score")
    assert by_score.sum() >= 1  # A0102XYD has a crossing that only the learned score flags
    assert not ml.objects["reason"].astype(str).str.startswith("crossing score").any()
    # the fingerprint keeps the key names and values that finished spreads were marked with
    assert adapted.key() == {
        "adapt_priors": True,
        "prior_pseudo_counts": 0.0,
        "prior_method": "em",
        "calibrate": False,
    }
    with pytest.raises(ChromosortError, match="pseudo-counts"):
        PriorOptions(pseudo_counts=-1)
    with pytest.raises(ChromosortError, match="prior method"):
        PriorOptions(method="magic")
    args = ["batch", str(spread_tree), "--model", str(random_model), "--out", str(out)]
    assert main(args + ["--prior-pseudo-counts", "-1"]) == 2
    assert main(args + ["--scheduler", "serial", "--exclude", "*K.tif", "--crossing-score",
                        "off", "--format", "png"]) == 0  # fmt: skip
    # the views averaged per crop are fingerprinted too
    two = run_to_end(run_batch(spread_tree, random_model, out, "serial", views=2, **kw))
    assert two.n_skipped == 0 and two.n_spreads == 2
    again = run_to_end(run_batch(spread_tree, random_model, out, "serial", views=2, **kw))
    assert again.n_skipped == 2
    with pytest.raises(SystemExit):
        main(args + ["--views", "0"])


def test_batch_without_dask_runs_in_process(spread_tree, random_model, tmp_path, monkeypatch):
    """Dask is an extra: without it a plain run goes on in this process, and asking for a Dask
    scheduler says which extra to install."""
    from napari_chromosome_sort.batch import run

    monkeypatch.setattr(run, "dask_available", lambda: False)
    kw = dict(exclude=("*K.tif",), formats=("png",))
    result = run_to_end(run_batch(spread_tree, random_model, tmp_path / "out", None, **kw))
    assert result.n_spreads == 2 and not result.failures
    with pytest.raises(ChromosortError, match=r"napari-chromosome-sort\[batch\]"):
        run_to_end(run_batch(spread_tree, random_model, tmp_path / "o2", "tcp://127.0.0.1:1"))


def test_workers_allocate_as_one_process_does():
    """Local Dask workers start without Dask's malloc trim setting (it makes every large array
    fault its pages in anew) and with one malloc arena, the rest of Dask's settings kept."""
    import dask
    import distributed  # noqa: F401  (loads Dask's distributed settings)

    from napari_chromosome_sort.batch.cluster import _SPAWN_ENVIRON, _worker_environ

    dask_default = dask.config.get(_SPAWN_ENVIRON)
    environ = _worker_environ()
    assert "MALLOC_TRIM_THRESHOLD_" in dask_default
    assert "MALLOC_TRIM_THRESHOLD_" not in environ and environ["MALLOC_ARENA_MAX"] == "1"
    assert environ["OMP_NUM_THREADS"] == dask_default["OMP_NUM_THREADS"]


def test_reports_carry_the_classifiers_error(tmp_path):
    """With the model's confusion, batch's summary has shares corrected for the classifier."""
    from napari_chromosome_sort.analysis.confusion import Confusion
    from napari_chromosome_sort.batch import write_reports

    rng = np.random.default_rng(0)
    rows = []
    for sample in ("wt", "mut"):
        for spread in range(3):
            for label in range(30):
                rows.append(
                    {
                        "sample": sample,
                        "spread": f"{sample}{spread}",
                        "label": label + 1,
                        "class": rng.choice(["A", "B", "C"], p=[0.6, 0.3, 0.1]),
                    }
                )
    objects = pd.DataFrame(rows)
    counts = np.array([[80, 15, 5], [10, 80, 10], [5, 15, 80]])
    confusion = Confusion(["A", "B", "C"], counts, "test")
    plain, _, _ = write_reports(tmp_path / "plain", objects, ["A", "B", "C"], ("png",))
    summary, _, _ = write_reports(
        tmp_path / "error", objects, ["A", "B", "C"], ("png",), confusion=confusion
    )
    assert "adjusted_percent" not in plain and "adjusted_percent" in summary
    inside = summary["adjusted_low"].le(summary["adjusted_percent"]) & summary[
        "adjusted_percent"
    ].le(summary["adjusted_high"])
    assert inside.all() and summary["adjusted_low"].ge(0).all()
    assert summary["adjusted_high"].le(100).all()
    stats = (tmp_path / "error" / "stats.txt").read_text()
    assert stats != (tmp_path / "plain" / "stats.txt").read_text()
    assert "classifier" in stats
