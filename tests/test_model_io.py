"""Model files: round trip, atomic save, corrupt/truncated/foreign files, imported models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_chromosome_sort.classification.models.model_io import (
    import_state_dict,
    load_model,
    save_model,
)
from napari_chromosome_sort.errors import ChromosortError


@pytest.fixture(scope="module")
def crops():
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(0)
    return [make_crop(c, rng, 48) for c in "ABC" for _ in range(3)]


@pytest.fixture(scope="module")
def model(crops):
    from napari_chromosome_sort.classification.training import TrainingConfig, train_classifier
    from napari_chromosome_sort.progress import run_to_end

    config = TrainingConfig(
        weights="random",
        input_size=48,
        views=2,
        l2_grid=(0.1,),
        inner_folds=0,
        prior_correction=False,
    )
    return run_to_end(train_classifier(crops, np.repeat([0, 1, 2], 3), ["A", "B", "C"], config))


def test_round_trip_identical_probabilities_and_metadata(model, crops, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert np.array_equal(loaded.predict_proba(crops), model.predict_proba(crops))
    assert loaded.classes == model.classes and loaded.backbone_name == model.backbone_name
    assert loaded.input_size == model.input_size
    assert loaded.metadata["preprocessing"] == model.metadata["preprocessing"]
    assert loaded.metadata["training"]["counts"] == {"A": 3, "B": 3, "C": 3}
    assert loaded.metadata["package_version"]
    assert loaded.cam_layer is loaded.backbone.trunk[12]


def test_atomic_save_keeps_the_old_model(model, tmp_path, monkeypatch):
    path = save_model(model, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_corrupt_truncated_foreign_files(model, tmp_path):
    good = save_model(model, tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "notes.txt").write_text("not a model\n")
    torch.save({"w": torch.zeros(3)}, tmp_path / "random.pth")
    from safetensors.torch import save_file

    save_file(
        {"w": torch.zeros(3)}, str(tmp_path / "other_tool.safetensors"), metadata={"format": "pt"}
    )
    for name, pattern in [
        ("truncated.safetensors", "not a readable model file|corrupt"),
        ("garbage.safetensors", "not a readable model file"),
        ("notes.txt", "not a readable model file"),
        ("random.pth", "import-model"),
        ("other_tool.safetensors", "another tool"),
        ("absent.safetensors", "not found"),
    ]:
        with pytest.raises(ChromosortError, match=pattern):
            load_model(tmp_path / name)
    # metadata that lies about the architecture
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "good.safetensors"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "good.safetensors"), "pt") as handle:
        meta = handle.metadata()
    info = json.loads(meta["napari-chromosome-sort"])
    info["classes"] = ["A", "B"]
    meta["napari-chromosome-sort"] = json.dumps(info)
    save_file(tensors, str(tmp_path / "lying.safetensors"), metadata=meta)
    with pytest.raises(ChromosortError):
        load_model(tmp_path / "lying.safetensors")


def _fake_paper_state(n_classes=3):
    from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision

    torch.manual_seed(0)
    return (
        import_torchvision().models.squeezenet1_1(weights=None, num_classes=n_classes).state_dict()
    )


def test_import_state_dict_predicts_and_round_trips(crops, tmp_path):
    torch.save(_fake_paper_state(), tmp_path / "paper.pth")
    model = import_state_dict(tmp_path / "paper.pth", ["a", "b", "c"], "squeezenet1_1")
    assert model.metadata["preprocessing"]["appearance"] == "plain"
    assert model.metadata["preprocessing"]["geometry"] == "stretch"
    assert model.input_size == 224 and model.cam_layer is model.backbone.trunk[12]
    proba = model.predict_proba(crops[:2], tta=False)
    assert proba.shape == (2, 3)
    loaded = load_model(save_model(model, tmp_path / "paper.safetensors"))
    assert np.allclose(loaded.predict_proba(crops[:2], tta=False), proba, atol=1e-6)
    with pytest.raises(ChromosortError, match="3 outputs but 2 class names"):
        import_state_dict(tmp_path / "paper.pth", ["a", "b"], "squeezenet1_1")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "partial.pth")
    with pytest.raises(ChromosortError):
        import_state_dict(tmp_path / "partial.pth", ["a", "b", "c"], "squeezenet1_1")


def test_published_model_reproduces_on_wt_crops(ikemoto_model_file, wt_crops_dir):
    from napari_chromosome_sort.classification.training import scan_folder

    model = import_state_dict(ikemoto_model_file, ["a", "b", "c"], "squeezenet1_1")
    paths, y, classes = scan_folder(wt_crops_dir)
    assert classes == ["a", "b", "c"]
    take = np.arange(0, len(paths), 3)  # every third crop keeps the test quick
    pred = model.predict_proba([paths[i] for i in take], tta=False).argmax(1)
    assert (pred == y[take]).mean() >= 0.68
