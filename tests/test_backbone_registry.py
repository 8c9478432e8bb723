"""Adding a backbone is one registry entry plus its weights: a toy network registered with one
``BackboneSpec`` trains, saves, loads, predicts, explains (Grad-CAM), imports its own published
``state_dict`` and is a CLI choice, with no other module touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_chromosome_sort.classification.models.registry import (
    BACKBONES,
    BackboneSpec,
    register_backbone,
)
from napari_chromosome_sort.errors import ChromosortError


class ToyNet(nn.Module):
    """A tiny network laid out like torchvision's: a ``features`` trunk and an ``fc`` head."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


TOY = BackboneSpec(
    name="toy",
    network=ToyNet,
    trunk=("features",),
    taps=(1, 4),
    channels=(16, 32),
    cam_index=4,
    blocks=(0, 2),
    head_kind="avgpool_fc",
    head_keys={"fc.weight": "2.weight", "fc.bias": "2.bias"},
)


@pytest.fixture
def toy():
    register_backbone(TOY)
    yield TOY
    BACKBONES.pop(TOY.name)


def test_a_registered_toy_backbone_trains_saves_predicts_and_explains(toy, tmp_path):
    from napari_chromosome_sort.classification.gradcam import gradcam
    from napari_chromosome_sort.classification.models.model_io import load_model, save_model
    from napari_chromosome_sort.classification.training import (
        TrainingConfig,
        scan_folder,
        train_from_folder,
    )
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.synthetic import make_crop_dataset

    torch.manual_seed(0)
    train_dir = make_crop_dataset(tmp_path / "train", n_per_class=14, seed=1, size=48)
    test_dir = make_crop_dataset(tmp_path / "test", n_per_class=8, seed=2, size=48)
    config = TrainingConfig(
        backbone="toy", weights="random", input_size=48, views=2, l2_grid=(0.01, 0.1), inner_folds=2
    )
    model = run_to_end(train_from_folder(train_dir, config))
    assert model.backbone_name == "toy" and model.classes == ["A", "B", "C"]
    assert model.cam_layer is model.backbone.trunk[4]

    loaded = load_model(save_model(model, tmp_path / "toy.safetensors"))
    assert loaded.backbone_name == "toy" and loaded.metadata["head"]["in_dim"] == 2 * (16 + 32)
    paths, y, _ = scan_folder(test_dir)
    proba = loaded.predict_proba(paths)
    assert np.allclose(proba, model.predict_proba(paths), atol=1e-6)
    assert proba.shape == (24, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    accuracy = float((proba.argmax(1) == y).mean())
    assert accuracy > 0.5, f"the toy backbone did not learn the synthetic crops: {accuracy:.2f}"

    from PIL import Image

    crop = np.asarray(Image.open(paths[0]).convert("RGB"))
    for layers in ("head", "last"):
        heat = gradcam(loaded, crop, layers=layers)
        assert heat.shape == crop.shape[:2] and np.isfinite(heat).all()
        assert heat.max() == pytest.approx(1.0) and heat.min() >= 0


def test_a_registered_toy_backbone_imports_its_published_state_dict(toy, tmp_path):
    from napari_chromosome_sort.classification.models.model_io import import_state_dict
    from napari_chromosome_sort.classification.models.registry import get_spec

    torch.manual_seed(0)
    net = ToyNet(num_classes=3).eval()
    net.features[3].running_mean.uniform_(-0.5, 0.5)  # trained-looking batch statistics
    torch.save(net.state_dict(), tmp_path / "toy.pth")
    model = import_state_dict(tmp_path / "toy.pth", ["a", "b", "c"], "toy")
    assert model.head_kind == get_spec("toy").head_kind == "avgpool_fc"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)  # the same network, tensor for tensor
    torch.save(ToyNet(num_classes=4).state_dict(), tmp_path / "four.pth")
    with pytest.raises(ChromosortError, match="4 outputs but 3 class names"):
        import_state_dict(tmp_path / "four.pth", ["a", "b", "c"], "toy")


def test_a_registered_toy_backbone_is_a_cli_choice_and_has_no_imagenet_weights(
    toy, tmp_path, monkeypatch
):
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.cli import build_parser

    args = build_parser().parse_args(
        ["train", "crops", "--out", "m.safetensors", "--backbone", "toy"]
    )
    assert args.backbone == "toy"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("CHROMOSORT_WEIGHTS_DIR", raising=False)
    with pytest.raises(ChromosortError, match="no published ImageNet weights"):
        build_backbone("toy")
    # its weights in $CHROMOSORT_WEIGHTS_DIR, under the spec's file name, are found
    state = ToyNet().state_dict()
    (tmp_path / "weights").mkdir()
    torch.save(state, tmp_path / "weights" / toy.filename)
    monkeypatch.setenv("CHROMOSORT_WEIGHTS_DIR", str(tmp_path / "weights"))
    backbone = build_backbone("toy")
    assert torch.equal(backbone.trunk[0].weight, state["features.0.weight"])


def test_register_backbone_checks_the_entry(toy):
    from dataclasses import replace

    with pytest.raises(ChromosortError, match="registered already"):
        register_backbone(TOY)
    with pytest.raises(ChromosortError, match="one channel count per tap"):
        register_backbone(replace(TOY, name="toy2", channels=(16,)))
    with pytest.raises(ChromosortError, match="head kind"):
        register_backbone(replace(TOY, name="toy3", head_kind="mlp"))
    assert "toy2" not in BACKBONES and "toy3" not in BACKBONES
