"""A property of every command that writes: whatever the folder around it holds (links to other
folders, files named like its outputs, inputs whose names collide), it changes no byte outside
its own files (issue 29 of the project's tracker).

Random trees are drawn with a seeded ``numpy.random`` generator (no hypothesis): inputs with
colliding names, output folders already holding the user's files under the tool's output names,
links from output names and output sub-folders to a folder of the user's. A batch, a sort, a
feature cache (what ``train --cache-dir`` writes and prunes) and a segment then run on the tree;
each either finishes or stops with one line, and afterwards every path the user made is
byte-for-byte what it was, and nothing appeared in the user's folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from trees import tree_hash

from napari_chromosome_sort.classification.models.model_io import save_model
from napari_chromosome_sort.cli import main
from napari_chromosome_sort.progress import run_to_end

SEEDS = (0, 1, 2)


class Tree:
    """A random tree below ``root``; every path it makes is the user's."""

    def __init__(self, root: Path, seed: int):
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.victim = root / "victim"  # the user's folder that links lead to
        self.victim.mkdir(parents=True)
        for i in range(3):
            self.user_file(self.victim / f"keep{i}.npy", b"user array %d" % i)
        (self.victim / "sub").mkdir()
        self.user_file(self.victim / "sub" / "a.npy", b"nested")

    def user_file(self, path: Path, data: bytes | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else self.rng.bytes(32))
        return path

    def image(self, path: Path, spread: bool = False) -> Path:
        from PIL import Image

        from napari_chromosome_sort.synthetic import make_spread

        path.parent.mkdir(parents=True, exist_ok=True)
        if spread:
            seed = int(self.rng.integers(1000))
            pixels = make_spread(seed=seed, n_chromosomes=4, shape=(128, 128), n_nuclei=0,
                                 n_debris=0, n_clusters=0).image  # fmt: skip
        else:
            pixels = self.rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
        return path

    def inputs(self, folder: Path, spread: bool) -> Path:
        """Images whose flattened names may collide (``x.png``/``x.jpg``, ``sub/y``/``sub__y``)."""
        names = ["x.png", "x.jpg", "sub/y.png", "sub__y.png", "z.png"]
        chosen = self.rng.choice(names, size=int(self.rng.integers(2, 4)), replace=False)
        for name in chosen:
            self.image(folder / "s" / name, spread)
        return folder

    def hazards(self, out: Path, files: list[str], folders: list[str]) -> None:
        """Around an output folder: user files under output names, links from output names and
        output sub-folders to the victim, stray user files."""
        for name in files:
            roll = self.rng.random()
            if roll < 0.3:
                self.user_file(out / name)
            elif roll < 0.55:
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).symlink_to(self.victim / "keep0.npy")
        for name in folders:
            if os.path.lexists(out / name) or any(p.is_symlink() for p in (out / name).parents):
                continue
            if self.rng.random() < 0.4:
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).symlink_to(self.victim, target_is_directory=True)
        if self.rng.random() < 0.5:
            self.user_file(out / f"mine-{int(self.rng.integers(100))}.txt")


def build_model():
    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        squeezenet_conv_head,
    )

    torch.manual_seed(0)
    return ChromosomeClassifier(
        build_backbone("squeezenet1_1", "random"),
        squeezenet_conv_head(3),
        ["A", "B", "C"],
        Preprocessing(size=32, appearance="plain", geometry="stretch"),
        "squeezenet_conv",
    )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_model(build_model(), tmp_path_factory.mktemp("model") / "m.safetensors")


def run(capsys, *args) -> None:
    """Run a command: it finishes or stops with one line and no traceback."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code != 0:
        assert len([line for line in err.splitlines() if "error" in line]) == 1, err


def features_with_cache(tree: Tree, cache: Path) -> None:
    """What ``train --cache-dir`` does to its folder: write features, then prune it (to 0)."""
    from napari_chromosome_sort.classification import features as F
    from napari_chromosome_sort.classification.models.backbones import build_backbone

    backbone = build_backbone("squeezenet1_1", "random")
    prep = F.Preprocessing(size=32, appearance="plain", geometry="stretch")
    crops = [tree.rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    F.clear_memory_cache()
    run_to_end(F.extract_features(backbone, crops, prep, views=1, cache_dir=cache, cache_limit=0))
    F.clear_memory_cache()


@pytest.mark.parametrize("seed", SEEDS)
def test_no_byte_outside_the_tools_own_files_changes(seed, model_file, tmp_path, capsys,
                                                     monkeypatch):  # fmt: skip
    monkeypatch.setenv("CHROMOSORT_ONNX", "0")
    tree = Tree(tmp_path, seed)
    batch_in = tree.inputs(tmp_path / "batch_in", spread=True)
    sort_in = tree.inputs(tmp_path / "sort_in", spread=False)
    seg_image = tree.image(tmp_path / "seg_in" / "s.png", spread=True)
    batch_out, sort_out = tmp_path / "batch_out", tmp_path / "sort_out"
    cache, seg_out = tmp_path / "cache", tmp_path / "seg_out"
    tree.hazards(batch_out, [".chromosort-batch.lock", "objects.csv", "summary.csv",
                             "stats.txt", "stacked_bar.png"], ["spreads/s", "spreads"])  # fmt: skip
    tree.hazards(sort_out, ["predictions.csv", "review.csv", "A/s__x.png", "_review/z.png"],
                 ["B", "C"])  # fmt: skip
    tree.hazards(cache, ["0123456789abcdef/" + "0" * 40 + ".npy"], ["inner-cv"])
    tree.user_file(cache / "data" / "arr.npy")  # a user's array in the cache folder
    tree.hazards(seg_out, ["s/labels.tif", "s/objects.csv", "s/crops/s_1.png"], ["s/crops"])
    before = tree_hash(tmp_path)

    run(capsys, "batch", batch_in, "--model", model_file, "--out", batch_out,
        "--scheduler", "serial", "--no-gradcam", "--format", "png")  # fmt: skip
    run(capsys, "sort", model_file, sort_in, "--out", sort_out, "--no-tta")
    try:
        features_with_cache(tree, cache)
    except Exception as error:  # noqa: BLE001 - a refusal is allowed, a change is not
        assert "link" in str(error) or "chromosort" in str(error), error
    run(capsys, "segment", seg_image, "--out", seg_out, "--quiet")

    after = tree_hash(tmp_path)
    lost = sorted(k for k in before if after.get(k) != before[k])
    assert lost == [], f"seed {seed}: the user's paths changed: {lost}"
    outputs = ("batch_out/", "sort_out/", "cache/", "seg_out/")
    stray = sorted(k for k in set(after) - set(before) if not f"{k}/".startswith(outputs))
    assert stray == [], f"seed {seed}: written outside the output folders: {stray}"
    through = [k for k in set(after) - set(before) if k.startswith("victim/")]
    assert through == []
