"""Fine-tuning the last backbone blocks on cached activations of the frozen rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_chromosome_sort.classification.features import Preprocessing, dihedral, preprocess
from napari_chromosome_sort.classification.models.backbones import build_backbone
from napari_chromosome_sort.classification.training.last_blocks import (
    Tail,
    frozen_part,
    graft,
    split_index,
    tail_features,
    tune_tail,
)
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import run_to_end


@pytest.fixture(scope="module")
def crops():
    from napari_chromosome_sort import synthetic

    rng = np.random.default_rng(0)
    images = [synthetic.make_crop(c, rng, size=40) for c in "ABC" for _ in range(4)]
    return images, np.repeat(np.arange(3), 4)


def test_the_tail_reads_the_cached_frozen_part_as_the_backbone_reads_the_crop(crops, tmp_path):
    images, _ = crops
    backbone = build_backbone("squeezenet1_1", "random")
    prep = Preprocessing(size=64)
    split = split_index(backbone, 2)
    assert split == backbone.spec.blocks[-2]
    maps, pooled = run_to_end(frozen_part(backbone, images, prep, split, 2, tmp_path))
    assert maps.shape[:2] == (len(images), 2) and maps.dtype == np.float16
    assert len(list(tmp_path.rglob("*.npz"))) == len(images)  # cached, one file per crop
    again = run_to_end(frozen_part(backbone, images, prep, split, 2, tmp_path))
    np.testing.assert_array_equal(again[0], maps)  # read back from the cache
    tail = Tail(backbone, split)
    X = tail_features(tail, maps, pooled)
    with torch.no_grad():
        x = preprocess(images, prep)
        want = np.stack([backbone(dihedral(x, v)).numpy() for v in range(2)], 1)
    assert X.shape == want.shape == (len(images), 2, backbone.feature_dim)
    np.testing.assert_allclose(X, want, rtol=0.02, atol=0.02 * np.abs(want).max())
    with pytest.raises(ChromosortError, match="fine-tunable blocks"):
        split_index(backbone, 99)


def test_tuning_moves_only_the_tail_and_graft_puts_it_in_the_backbone(crops):
    images, y = crops
    backbone = build_backbone("squeezenet1_1", "random")
    prep = Preprocessing(size=64)
    split = split_index(backbone, 1)
    maps, pooled = run_to_end(frozen_part(backbone, images, prep, split, 2))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    tail = run_to_end(tune_tail(Tail(backbone, split), maps, pooled, y, 3, epochs=2, lr=1e-2))
    for key, value in backbone.state_dict().items():  # the backbone itself is untouched
        assert torch.equal(value, before[key])
    moved = [
        not torch.equal(p, q)
        for p, q in zip(tail.layers.parameters(), backbone.trunk[split].parameters(), strict=True)
    ]
    assert any(moved)
    source = backbone.weights_source
    graft(backbone, tail)
    assert backbone.weights_source != source and "tuned" in backbone.weights_source
    assert not any(p.requires_grad for p in backbone.parameters())
    with torch.no_grad():
        x = preprocess(images, prep)
        grafted = backbone(x).numpy()
    tuned = tail_features(tail, maps, pooled)[:, 0]
    np.testing.assert_allclose(grafted, tuned, rtol=0.02, atol=0.02 * np.abs(tuned).max())
