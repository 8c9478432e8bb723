"""ONNX Runtime frozen forward: same features and logits as torch, cached, torch as fallback."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from napari_chromosome_sort.classification.features import dihedral  # noqa: E402
from napari_chromosome_sort.classification.models import fast_inference  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(fast_inference.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(fast_inference.DISABLE_ENV, raising=False)
    fast_inference.clear_sessions()
    yield
    fast_inference.clear_sessions()


def _crops(n: int = 4) -> list[np.ndarray]:
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(3)
    return [make_crop("ABC"[i % 3], rng, 40 + 4 * i) for i in range(n)]


def _classifier(head_kind: str = "pooled", size: int = 96):
    import torch

    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        PooledHead,
        squeezenet_conv_head,
    )

    torch.manual_seed(0)
    backbone = build_backbone("squeezenet1_1", weights="random")
    if head_kind == "pooled":
        head = PooledHead(backbone.feature_dim, 3)
        with torch.no_grad():
            head.mu.uniform_(0.0, 1.0)
            head.sigma.uniform_(0.5, 2.0)
    else:
        head = squeezenet_conv_head(3)
    prep = Preprocessing(size=size, geometry="pad")
    return ChromosomeClassifier(backbone, head, ["A", "B", "C"], prep, head_kind).eval()


@pytest.mark.parametrize("head_kind", ["pooled", "squeezenet_conv"])
def test_onnx_logits_equal_torch(head_kind):
    import torch

    model = _classifier(head_kind)
    fast = model.fast_logits(fast_inference.MIN_FORWARDS)
    assert fast is not None
    x = model.preprocess(_crops())
    with torch.no_grad():
        for view in (0, 3, 5):
            xv = dihedral(x, view)
            expected = model(xv)
            got = fast(xv)
            assert got.shape == expected.shape
            assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    # the graph is cached on disk: a fresh process state loads it even for a tiny job
    files = list((fast_inference.user_cache_dir() / "onnx").glob("*.onnx"))
    assert len(files) == 1
    fast_inference.clear_sessions()
    assert model.fast_logits(1) is not None


def test_small_jobs_do_not_export_and_predictions_match():
    import torch

    model = _classifier()
    assert model.fast_logits(fast_inference.MIN_FORWARDS - 1) is None
    crops = _crops(8)  # 8 crops x 8 views = MIN_FORWARDS: exported
    fast = model.predict_proba(crops, views=8)
    assert list((fast_inference.user_cache_dir() / "onnx").glob("*.onnx"))
    x = model.preprocess(crops)
    with torch.no_grad():
        slow = sum(torch.softmax(model(dihedral(x, v)), 1) for v in range(8)).numpy() / 8
    assert np.allclose(fast, slow, atol=1e-5)


def test_onnx_features_equal_torch():
    from napari_chromosome_sort.classification.features import (
        Preprocessing,
        clear_memory_cache,
        extract_features,
    )
    from napari_chromosome_sort.progress import run_to_end

    model = _classifier()
    prep = Preprocessing(size=96, geometry="pad")
    crops = _crops(8)
    clear_memory_cache()
    fast = run_to_end(extract_features(model.backbone, crops, prep, views=8))
    assert list((fast_inference.user_cache_dir() / "onnx").glob("*.onnx"))
    clear_memory_cache()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(fast_inference.DISABLE_ENV, "0")
        slow = run_to_end(extract_features(model.backbone, crops, prep, views=8))
    clear_memory_cache()
    assert fast.shape == slow.shape == (8, 8, model.backbone.feature_dim)
    assert np.allclose(fast, slow, atol=1e-4, rtol=1e-4)


def test_falls_back_to_torch(monkeypatch):
    model = _classifier()
    crops = _crops(8)
    monkeypatch.setenv(fast_inference.DISABLE_ENV, "0")
    assert model.fast_logits(10_000) is None
    reference = model.predict_proba(crops)
    monkeypatch.delenv(fast_inference.DISABLE_ENV)

    def broken(*_args, **_kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(fast_inference, "_export", broken)
    assert model.fast_logits(10_000) is None
    assert np.array_equal(model.predict_proba(crops), reference)
    assert not (fast_inference.user_cache_dir() / "onnx").exists()


def test_corrupt_cached_graph_is_replaced():
    model = _classifier()
    assert model.fast_logits(fast_inference.MIN_FORWARDS) is not None
    (path,) = (fast_inference.user_cache_dir() / "onnx").glob("*.onnx")
    path.write_bytes(b"not a graph")
    fast_inference.clear_sessions()
    assert model.fast_logits(1) is None  # tiny job: no new export, torch
    assert model.fast_logits(fast_inference.MIN_FORWARDS) is not None
    assert path.stat().st_size > 1000


def test_cache_is_size_bounded(tmp_path):
    folder = tmp_path / "graphs"
    folder.mkdir()
    import os

    for i in range(4):
        path = folder / f"{i}.onnx"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + i, 1000 + i))
    fast_inference._prune(folder, keep=folder / "0.onnx", limit=250)
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["0.onnx", "2.onnx", "3.onnx"]


def _linear_head_model():
    """A pooled linear head with random weights (its Grad-CAM terms are fixed convolutions)."""
    import torch

    model = _classifier()
    with torch.no_grad():
        model.head.net.weight.normal_(0.0, 0.05)
    return model


def test_onnx_gradcam_equals_torch(monkeypatch):
    """The multi-layer Grad-CAM of a linear pooled head computed in one ONNX Runtime forward
    equals torch's forward-and-backward maps."""
    from napari_chromosome_sort.classification.gradcam import gradcams

    model = _linear_head_model()
    crops = _crops(5)
    fast = gradcams(model, crops, [0, 1, 2, 0, None], forwards=fast_inference.MIN_FORWARDS)
    assert getattr(model, "_head_terms_runner", None) is not None  # the ONNX path ran
    monkeypatch.setenv(fast_inference.DISABLE_ENV, "0")
    slow = gradcams(model, crops, [0, 1, 2, 0, None])
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == b.shape and a.max() > 0
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_spread_gradcam_reuses_the_first_view(monkeypatch):
    """predict_spread's Grad-CAM from the terms of the classification forward equals a separate
    Grad-CAM pass, and the probabilities equal predict_proba's."""
    from napari_chromosome_sort.classification.gradcam import explained_proba, spread_gradcam
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.synthetic import make_spread

    model = _linear_head_model()
    spread = make_spread(seed=1, n_chromosomes=40)
    result = predict_spread(model, spread.image, gradcam=True)
    crops = result.crops
    assert len(crops) * model.prediction_views >= fast_inference.MIN_FORWARDS
    proba, terms = explained_proba(model, [c.pixels for c in crops])
    assert terms is not None and len(terms) == len(crops)
    np.testing.assert_allclose(proba, model.predict_proba([c.pixels for c in crops]), atol=1e-5)
    index = {name: i for i, name in enumerate(model.classes)}
    classes = [index[c] for c in result.table["class"]]
    separate = spread_gradcam(model, crops, classes)
    assert result.gradcam_map.max() > 0
    np.testing.assert_allclose(result.gradcam_map, separate, atol=1e-4)


def test_array_views_and_background_equal_the_tensor_ones():
    """The numpy path (ONNX Runtime) takes the same dihedral views and the same background
    colour (torch.median's lower middle value) as the torch path."""
    import torch

    from napari_chromosome_sort.classification.gradcam import background_colours

    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32)
    x[..., 0, :2] = 5.0  # an even-sized border with a tie between its middle values
    for view in range(8):
        np.testing.assert_array_equal(dihedral(x, view), dihedral(torch.from_numpy(x), view))
    np.testing.assert_array_equal(background_colours(x), background_colours(torch.from_numpy(x)))


def test_first_view_terms_serve_the_torch_path_too(monkeypatch):
    """When the classification runs in torch while Grad-CAM's graph runs in ONNX Runtime, the
    first view still comes from that graph (numpy in, logits out) and the probabilities equal
    the all-torch ones."""
    from napari_chromosome_sort.classification.gradcam import explained_proba

    model = _linear_head_model()
    crops = _crops(8) * 8  # 64 crops: enough for an export
    proba, terms = explained_proba(model, crops, views=1)
    monkeypatch.setattr(type(model), "_numpy_logits", lambda self, forwards: None)
    mixed, mixed_terms = explained_proba(model, crops, views=2)
    assert terms is not None and mixed_terms is not None and len(mixed_terms) == len(crops)
    monkeypatch.setenv(fast_inference.DISABLE_ENV, "0")
    torch_only = model.predict_proba(crops, views=2)
    np.testing.assert_allclose(mixed, torch_only, atol=1e-4)
    np.testing.assert_allclose(proba, model.predict_proba(crops, views=1), atol=1e-4)
