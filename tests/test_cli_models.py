"""CLI: train / evaluate / crossval / import-model on small synthetic data."""

from __future__ import annotations

import json

import pytest
import torch

from napari_chromosome_sort.cli import main

#: a small, quick model: random backbone weights, small crops, a fixed L2 (no inner search)
SMALL_MODEL = ["--weights", "random", "--input-size", "48", "--l2", "0.1", "--quiet"]


@pytest.fixture(scope="module")
def crop_folder(tmp_path_factory):
    from napari_chromosome_sort.synthetic import make_crop_dataset

    return make_crop_dataset(tmp_path_factory.mktemp("crops"), n_per_class=5, seed=3, size=48)


def test_train_then_evaluate_json(crop_folder, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    rc = main(["train", str(crop_folder), "--out", str(out), *SMALL_MODEL])
    assert rc == 0 and out.is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out), str(crop_folder), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"n", "accuracy", "kappa", "classes", "confusion", "per_class", "distribution"} <= set(
        report
    )
    assert report["n"] == 15 and set(report["distribution"]) == {"true", "pred"}


def test_crossval_json(crop_folder, capsys):
    rc = main(["crossval", str(crop_folder), "--folds", "3", "--json", *SMALL_MODEL])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["folds"]) == 3 and "accuracy_sd" in report and report["n"] == 15


def test_import_model_and_user_errors(tmp_path, capsys):
    from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision

    state = import_torchvision().models.squeezenet1_1(weights=None, num_classes=3).state_dict()
    torch.save(state, tmp_path / "paper.pth")
    out = tmp_path / "paper.safetensors"
    assert (
        main(
            [
                "import-model",
                str(tmp_path / "paper.pth"),
                "--classes",
                "a,b,c",
                "--backbone",
                "squeezenet1_1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["classes"] == ["a", "b", "c"]
    assert (
        main(
            [
                "import-model",
                str(tmp_path / "paper.pth"),
                "--classes",
                "a,b",
                "--out",
                str(tmp_path / "x.safetensors"),
            ]
        )
        == 2
    )
    assert "error" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_text("nope")
    assert main(["evaluate", str(tmp_path / "bad.safetensors"), str(tmp_path)]) == 2
    assert "not a readable model file" in capsys.readouterr().err


def test_import_model_never_replaces_a_users_file(tmp_path, capsys):
    """`import-model --out` naming a file chromosort did not write is refused before any work
    (as `train --out`); `--overwrite` replaces it; importing again over its own output is fine."""
    from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision

    state = import_torchvision().models.squeezenet1_1(weights=None, num_classes=3).state_dict()
    torch.save(state, tmp_path / "paper.pth")
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"the user's own file")
    args = ["import-model", str(tmp_path / "paper.pth"), "--classes", "A,B,C", "--out", str(mine)]
    assert main(args) == 2
    assert "was not written by chromosort" in capsys.readouterr().err
    assert mine.read_bytes() == b"the user's own file"
    assert main([*args, "--overwrite"]) == 0
    assert main(args) == 0  # its own file now
