"""Shared test fixtures: real data from ../shared (skipped when absent) and synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import train_tiny_model
from validation.data import data_root

REPO = Path(__file__).resolve().parents[1]
DATA = data_root()
SHARED = DATA.parent


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (see ../shared/data/README.md)")
    return path


REAL_DATA_FIXTURES = {
    "shared_dir",
    "giemsa_dir",
    "dapi_dir",
    "wt_crops_dir",
    "squeezenet_features_file",
    "ikemoto_model_file",
}


def pytest_collection_modifyitems(config, items):
    """Every test that uses a real-data fixture (directly or through another fixture) is marked
    ``real_data``: ``-m "not real_data"`` runs the rest."""
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def giemsa_dir() -> Path:
    """Giemsa DDX11-/- spreads: images/*.png + labels/*.txt (YOLO boxes)."""
    return _require(DATA / "giemsa_spreads_ddx11")


@pytest.fixture(scope="session")
def dapi_dir() -> Path:
    """DAPI spreads: <slide>/<img>D.tif with <img>K.tif karyotype truth."""
    return _require(DATA / "adir_dapi_spreads")


@pytest.fixture(scope="session")
def wt_crops_dir() -> Path:
    """652 labelled WT crops: {a,b,c}/*.jpg."""
    return _require(DATA / "ikemoto_crops_wt")


@pytest.fixture(scope="session")
def squeezenet_features_file() -> Path:
    return _require(SHARED / "weights" / "squeezenet1_1_imagenet_features.pth")


@pytest.fixture(scope="session")
def ikemoto_model_file() -> Path:
    return _require(SHARED / "weights" / "ikemoto2022_squeezenet_1.pth")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to open a network connection in a test fails loudly."""
    import socket

    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise RuntimeError(f"test tried to reach the network: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The plugin's user cache (exported ONNX graphs) goes to a temporary folder, not the
    user's real cache."""
    import os

    from napari_chromosome_sort.classification.models.fast_inference import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("user_cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture
def segment_in_viewer(qtbot):
    """A function segmenting the viewer's ``spread`` image with the Segment widget, as a user
    does; returns ``(segment_widget, objects_layer)``."""

    def run(viewer):
        from napari_chromosome_sort._widgets.segment import SegmentWidget

        segment = SegmentWidget(viewer)
        segment.run()
        qtbot.waitUntil(
            lambda: "spread objects" in viewer.layers and not segment.running, timeout=60000
        )
        return segment, viewer.layers["spread objects"]

    return run


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small model trained on synthetic crops, random weights (no network); one per module."""
    from napari_chromosome_sort.classification.models.model_io import save_model

    root = tmp_path_factory.mktemp("tiny_model")
    return save_model(train_tiny_model(root), root / "tiny.safetensors")


@pytest.fixture
def own_and_reference(tmp_path):
    """``(own, ref)``: an own :class:`CropDataset` of 12 synthetic A/B crops from 3 spreads (in
    its manifest) and a reference crop folder of 6 crops per class, both under ``tmp_path``."""
    import numpy as np

    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.synthetic import make_crop, make_crop_dataset

    rng = np.random.default_rng(0)
    own = CropDataset(tmp_path / "own")
    for i in range(12):
        cls = "A" if i % 2 else "B"
        own.add(make_crop(cls, rng, 48), cls, source=f"spread{i % 3}.png", label=i + 1)
    ref = make_crop_dataset(tmp_path / "ref", n_per_class=6, classes=("A", "B"), seed=2)
    return own, ref
