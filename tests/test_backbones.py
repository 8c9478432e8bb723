"""Backbone registry, weight resolution (no network, no silent random init), learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_chromosome_sort.classification.models.backbones import (
    BACKBONES,
    build_backbone,
    get_spec,
)
from napari_chromosome_sort.errors import ChromosortError


def _tv():
    from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision

    return import_torchvision()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """Nothing cached: torch hub dir is an empty folder, no $CHROMOSORT_WEIGHTS_DIR."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("CHROMOSORT_WEIGHTS_DIR", raising=False)
    return tmp_path / "hub"


def _trunk_equal(backbone, state, prefix="features."):
    own = backbone.trunk.state_dict()
    return all(torch.equal(own[k], state[prefix + k]) for k in own)


def test_registry_has_the_papers_backbones():
    assert {"squeezenet1_1", "resnet18"} <= set(BACKBONES)
    assert get_spec("squeezenet1_1").filename == "squeezenet1_1-b8a52dc0.pth"
    with pytest.raises(ChromosortError, match="unknown backbone"):
        get_spec("vgg99")


@pytest.mark.parametrize("name", ["squeezenet1_1", "resnet18"])
def test_offline_nothing_cached_names_the_file_and_url(name, empty_hub):
    spec = get_spec(name)
    with pytest.raises(ChromosortError) as info:
        build_backbone(name)  # ImageNet by default; the network is blocked by conftest
    message = str(info.value)
    assert spec.url in message and "--weights" in message and "CHROMOSORT_WEIGHTS_DIR" in message
    with pytest.raises(ChromosortError):
        build_backbone(name, weights="imagenet")


def test_random_only_when_asked():
    backbone = build_backbone("squeezenet1_1", weights="random")
    assert backbone.weights_source.startswith("random:")
    # two random backbones differ, so their cached features must never be shared
    other = build_backbone("squeezenet1_1", weights="random")
    assert other.weights_source != backbone.weights_source


def test_local_full_and_backbone_only_files(tmp_path):
    full = _tv().models.squeezenet1_1(weights=None).state_dict()
    torch.save(full, tmp_path / "full.pth")
    backbone = build_backbone("squeezenet1_1", weights=tmp_path / "full.pth")
    assert _trunk_equal(backbone, full)
    features_only = {k: v for k, v in full.items() if k.startswith("features.")}
    torch.save(features_only, tmp_path / "features.pth")
    backbone = build_backbone("squeezenet1_1", weights=str(tmp_path / "features.pth"))
    assert _trunk_equal(backbone, full)
    assert backbone.weights_source.endswith("features.pth")


def test_hub_cache_and_env_dir(empty_hub, tmp_path, monkeypatch):
    state = _tv().models.squeezenet1_1(weights=None).state_dict()
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(state, empty_hub / "checkpoints" / "squeezenet1_1-b8a52dc0.pth")
    backbone = build_backbone("squeezenet1_1")
    assert _trunk_equal(backbone, state)
    assert backbone.weights_source.startswith(str(empty_hub))
    other = _tv().models.squeezenet1_1(weights=None).state_dict()
    (tmp_path / "mine").mkdir()
    torch.save(other, tmp_path / "mine" / "squeezenet1_1-b8a52dc0.pth")
    monkeypatch.setenv("CHROMOSORT_WEIGHTS_DIR", str(tmp_path / "mine"))
    assert _trunk_equal(build_backbone("squeezenet1_1", weights="imagenet"), other)


def test_foreign_weights_are_refused(tmp_path):
    torch.save(_tv().models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ChromosortError, match="not a squeezenet1_1 weights file"):
        build_backbone("squeezenet1_1", weights=tmp_path / "resnet.pth")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ChromosortError, match="not a readable weights file"):
        build_backbone("squeezenet1_1", weights=tmp_path / "notes.txt")
    with pytest.raises(ChromosortError, match="not found"):
        build_backbone("squeezenet1_1", weights=tmp_path / "absent.pth")


def _crops(n_per_class, seed):
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(seed)
    images = [make_crop(c, rng) for c in "ABC" for _ in range(n_per_class)]
    return images, np.repeat(np.arange(3), n_per_class)


@pytest.mark.parametrize("name", ["squeezenet1_1", "resnet18"])
def test_every_backbone_trains_and_learns_synthetic_crops(name):
    from napari_chromosome_sort.classification.training import TrainingConfig, train_classifier
    from napari_chromosome_sort.progress import Progress, run_to_end

    torch.manual_seed(0)
    images, y = _crops(14, seed=1)
    test_images, test_y = _crops(8, seed=2)
    config = TrainingConfig(
        backbone=name, weights="random", input_size=64, l2_grid=(0.01, 0.1), inner_folds=2, views=4
    )
    reports = []
    model = run_to_end(train_classifier(images, y, ["A", "B", "C"], config), reports.append)
    assert reports and all(isinstance(r, Progress) for r in reports)
    assert model.classes == ["A", "B", "C"] and model.backbone_name == name
    proba = model.predict_proba(test_images)
    assert proba.shape == (24, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    accuracy = float((proba.argmax(1) == test_y).mean())
    assert accuracy >= 0.6, f"{name} did not learn the synthetic crops: {accuracy:.2f}"
    # Grad-CAM layer is part of the graph that produces the logits
    grads = []
    handle = model.cam_layer.register_full_backward_hook(lambda m, gi, go: grads.append(go[0]))
    x = model.preprocess(test_images[:1]).requires_grad_(True)
    model(x)[0, 0].backward()
    handle.remove()
    assert grads and grads[0].abs().sum() > 0
