"""The headless demo on the real sample spread, with the bundled wild-type model."""

from napari_chromosome_sort._sample_data import WT_MODEL, sample_path
from napari_chromosome_sort.classification.models.model_io import read_metadata
from napari_chromosome_sort.cli import demo


def test_bundled_model_is_a_wild_type_abc_model():
    meta = read_metadata(sample_path(WT_MODEL))
    assert list(meta["classes"]) == ["A", "B", "C"]
    assert sample_path("wt_squeezenet1_1.LICENSE.txt").is_file()


def test_demo_calls_the_real_sample_spread(tmp_path, capsys):
    demo._real_sample(tmp_path, screenshot=False)
    text = capsys.readouterr().out
    for name in ("labels.tif", "objects.csv", "predictions.csv", "gradcam.tif", "overview.png"):
        assert (tmp_path / name).is_file(), name
    found = next(line for line in text.splitlines() if "annotated chromosomes found" in line)
    # "47 of 47 annotated chromosomes found; called as annotated: 43 of 47 (91%)"
    words = found.split()
    n_found, n_boxes, n_right = int(words[0]), int(words[2]), int(words[9])
    assert n_boxes == 47 and n_found >= 45
    assert n_right >= 0.85 * n_found  # the spread is nearly all type A; the model agrees


def test_demo_never_replaces_a_users_file(tmp_path, capsys):
    """`chromosort demo --out FOLDER` where FOLDER already holds a file of the user's with a
    name the demo writes: refused before any work, the file untouched; the demo's own
    outputs may be written again."""
    from napari_chromosome_sort.cli import main

    mine = tmp_path / "giemsa_sample" / "spread.png"
    mine.parent.mkdir()
    mine.write_bytes(b"the user's own picture")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "was not written by chromosort" in capsys.readouterr().err
    assert mine.read_bytes() == b"the user's own picture"
    assert not (tmp_path / "synthetic").exists()
    mine.unlink()
    demo._real_sample(tmp_path / "giemsa_sample", screenshot=False)
    demo._check_outputs(tmp_path, overwrite=False)  # its own files: no refusal
