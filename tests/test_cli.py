"""The chromosort dispatcher: help lists commands, user errors become one line + exit 2."""

import subprocess
import sys

from napari_chromosome_sort.cli import build_parser, main


def test_help_lists_available_commands():
    text = build_parser().format_help()
    assert "chromosort" in text
    assert "COMMAND" in text


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "napari_chromosome_sort.cli", "--version"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert "chromosort" in out.stdout


def test_unknown_command_fails(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as stop:
        assert stop.code == 2
    else:  # pragma: no cover
        raise AssertionError("argparse accepted an unknown command")


def test_predict_defaults_to_the_bundled_model(tmp_path):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from napari_chromosome_sort import synthetic
    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort.cli.predict import model_and_inputs

    assert model_and_inputs(None, ["m.safetensors", "a.png"]) == ("m.safetensors", ["a.png"])
    assert model_and_inputs("m.pth", ["a.png"]) == ("m.pth", ["a.png"])
    assert model_and_inputs(None, ["a.png"]) == (str(bundled_model_path()), ["a.png"])
    folder = synthetic.make_crop_dataset(tmp_path / "crops", n_per_class=1, seed=0, size=48)
    crop = next(p for p in sorted(folder.rglob("*.png")))
    Image.fromarray(np.asarray(Image.open(crop))).save(tmp_path / "one.png")
    assert main(["predict", str(tmp_path / "one.png"), "--out", str(tmp_path / "c.csv")]) == 0
    calls = pd.read_csv(tmp_path / "c.csv")
    assert len(calls) == 1 and calls["class"].iloc[0] in {"A", "B", "C"}


def test_batch_logs_one_line_per_spread_and_no_dask_noise(tmp_path, capfd):
    """In a log (stderr not a terminal) each spread is one line; Dask's warnings stay out."""
    from PIL import Image

    from napari_chromosome_sort import synthetic

    for sample, seed in (("wt", 0), ("mut", 1)):
        (tmp_path / "in" / sample).mkdir(parents=True)
        image = synthetic.make_spread(seed=seed).image
        Image.fromarray(image).save(tmp_path / "in" / sample / "s.png")
    code = main(
        ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "1"]
        + ["--no-gradcam", "--format", "png"]
    )
    err = capfd.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert {"wt/s", "mut/s"} <= {line.split()[1] for line in lines}, err
    assert lines[-1].endswith("reports written"), err
    assert "distributed" not in err and "nanny" not in err.lower(), err
    # pictures a person can open beside the arrays
    import numpy as np
    import tifffile

    spread = tmp_path / "out" / "spreads" / "wt" / "s"
    labels = np.load(spread / "labels.npy")
    assert np.array_equal(tifffile.imread(spread / "labels.tif"), labels)
    picture = np.asarray(Image.open(spread / "calls.png"))
    assert picture.shape == (*labels.shape, 3)


def test_batch_says_which_spreads_are_unlike_the_models_training_images(tmp_path, capfd):
    """A DAPI spread called by the bundled (Giemsa) model is named in a warning, as `predict`
    does, also when a resumed run skips it; the Giemsa spread is not."""
    from PIL import Image

    from napari_chromosome_sort import synthetic

    for sample, modality in (("giemsa", "giemsa"), ("dapi", "dapi")):
        (tmp_path / "in" / sample).mkdir(parents=True)
        spread = synthetic.make_spread(seed=3, n_chromosomes=10, modality=modality)
        Image.fromarray(spread.image).save(tmp_path / "in" / sample / "s.png")
    args = ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--scheduler"]
    args += ["serial", "--no-gradcam", "--format", "png"]
    for _run in ("first", "resumed"):
        assert main(args) == 0
        out, err = capfd.readouterr()
        # the classifier's error is named after the user's model, not the run's private copy
        assert "classifier error from wt_squeezenet1_1.safetensors" in out, out
        warnings = [line for line in err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1, err
        assert "1 spread(s) (dapi/s)" in warnings[0] and "Giemsa" in warnings[0], err


def test_inputs_after_options_count_as_inputs(capsys):
    """`chromosort predict MODEL --spreads --out c.csv SPREADS/*.png`: every input counts, as
    a shell glob after the options gives them; an unknown option is still refused."""
    from napari_chromosome_sort.cli import parse_arguments

    args = parse_arguments(["predict", "m.safetensors", "--spreads", "--out", "c.csv", "a.png"])
    assert args.inputs == ["m.safetensors", "a.png"] and args.spreads
    args = parse_arguments(["segment", "a.png", "--out", "seg", "--quiet", "b.png", "c.png"])
    assert args.images == ["a.png", "b.png", "c.png"] and args.out == "seg"
    args = parse_arguments(["segment-learn", "a.png", "--truth", "t", "--out", "m.json", "b.png"])
    assert args.images == ["a.png", "b.png"]
    try:
        parse_arguments(["segment", "a.png", "--out", "seg", "--no-such-option"])
    except SystemExit as stop:
        assert stop.code == 2
    else:  # pragma: no cover
        raise AssertionError("an unknown option was accepted")
    assert "--no-such-option" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_is_said_before_any_work(
    tmp_path, monkeypatch, capsys
):
    """`predict`, `train`, `readout`... name the folder that cannot be written, in one line,
    before segmenting or training (not after minutes of work, naming a temporary file)."""
    import os

    from napari_chromosome_sort.classification import predict

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(  # as a read-only folder, also for root (who may write anywhere)
        os, "access", lambda p, mode: os.path.abspath(p) != str(locked) and real_access(p, mode)
    )
    monkeypatch.setattr(predict, "predict_spread", lambda *a, **k: 1 / 0)  # no work may start
    spread = tmp_path / "s.png"
    from PIL import Image

    from napari_chromosome_sort import synthetic

    Image.fromarray(synthetic.make_spread(seed=1, n_chromosomes=5).image).save(spread)
    code = main(["predict", str(spread), "--spreads", "--out", str(locked / "sub" / "c.csv")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"chromosort predict: error: cannot write output {locked / 'sub' / 'c.csv'}: "
        f"folder {locked} is not writable"
    )
    assert not (locked / "sub").exists()
