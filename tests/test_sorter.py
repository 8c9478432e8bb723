"""Whole-image sorter: train on folder-per-class images, sort without touching originals,
low-confidence review, corrections written back, CLI, real mitotic vs interphase tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_chromosome_sort.classification.models import model_io
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import run_to_end
from napari_chromosome_sort.sorter import (
    REVIEW,
    TASK,
    add_to_training_set,
    sort_folder,
    sorter_config,
    train_sorter,
)

FAST = dict(weights="random", input_size=64, views=1, l2=1e-2)


def _image(kind: str, rng) -> np.ndarray:
    """'spots': dark field with bright discs; 'stripes': light field with dark bars."""
    if kind == "spots":
        img = rng.integers(0, 30, (80, 96, 3)).astype(np.uint8)
        yy, xx = np.mgrid[:80, :96]
        for _ in range(3):
            cy, cx = rng.integers(15, 65), rng.integers(15, 80)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 230
    else:
        img = rng.integers(200, 255, (80, 96, 3)).astype(np.uint8)
        for x in range(int(rng.integers(0, 8)), 96, 16):
            img[:, x : x + 6] = 40
    return img


def _folder(root: Path, n: int, seed: int, classes=("spots", "stripes"), nested=False) -> Path:
    rng = np.random.default_rng(seed)
    for cls in classes:
        folder = root / cls if not nested else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(_image(cls, rng)).save(folder / f"{cls}_{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = _folder(tmp_path_factory.mktemp("train"), 10, 0)
    model = run_to_end(train_sorter(root, sorter_config(**FAST)))
    path = tmp_path_factory.mktemp("model") / "sorter.safetensors"
    model_io.save_model(model, path)
    return path


def test_sorter_model_metadata(trained):
    model = model_io.load_model(trained)
    assert model.classes == ["spots", "stripes"]
    assert model.metadata["task"] == TASK
    assert model.metadata["preprocessing"]["appearance"] == "plain"
    assert model.preprocessing.appearance == "plain"


def test_sort_copies_links_and_review(trained, tmp_path):
    new = _folder(tmp_path / "new", 4, 1, nested=True)
    (new / "sub").mkdir()
    Image.fromarray(_image("spots", np.random.default_rng(5))).save(new / "sub" / "x.png")
    before = {p: p.read_bytes() for p in new.rglob("*.png")}
    model = model_io.load_model(trained)
    result = run_to_end(sort_folder(model, new, tmp_path / "out", min_confidence=0.0, tta=False))
    table = result.table
    assert len(table) == 9 and result.n_review == 0
    truth = [
        "spots" if "spots" in Path(f).name or Path(f).name == "x.png" else "stripes"
        for f in table["file"]
    ]
    assert (table["class"] == truth).mean() >= 0.8
    for row in table.itertuples():
        assert Path(row.placed_as).is_file() and Path(row.placed_as).parent.name == row._2
    assert (tmp_path / "out" / "spots" / "sub__x.png").is_file()
    # originals untouched
    assert {p: p.read_bytes() for p in new.rglob("*.png")} == before
    csv = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert {"file", "class", "confidence", "p_spots", "p_stripes", "review"} <= set(csv)
    # everything below an impossible threshold goes to _review, hard links share the inode
    linked = run_to_end(
        sort_folder(model, new, tmp_path / "out2", link=True, min_confidence=1.0, tta=False)
    )
    low = linked.table["confidence"] < 1.0
    assert linked.n_review == low.sum() > 0 and set(linked.table["how"]) == {"hardlink"}
    placed = Path(linked.table["placed_as"][low].iloc[0])
    assert placed.parent.name == REVIEW
    assert placed.stat().st_ino == Path(linked.table["file"][low].iloc[0]).stat().st_ino
    assert len(pd.read_csv(tmp_path / "out2" / "review.csv")) == low.sum()
    with pytest.raises(ChromosortError):
        run_to_end(sort_folder(model, new, new))


def test_corrections_written_to_training_set(tmp_path):
    src = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    ds = tmp_path / "dataset"
    first = add_to_training_set(src, ds, "spots")
    assert first == ds / "spots" / "img.png" and first.is_file()
    moved = add_to_training_set(src, ds, "stripes")  # corrected again: our copy is re-labelled
    assert moved == ds / "stripes" / "img.png" and not first.exists() and src.is_file()
    log = pd.read_csv(ds / "corrections.csv")
    assert len(log) == 1 and log["class"].iloc[0] == "stripes"
    other = tmp_path / "b" / "img.png"
    other.parent.mkdir()
    other.write_bytes(src.read_bytes())
    assert add_to_training_set(other, ds, "stripes").name == "img_1.png"  # no overwrite
    with pytest.raises(ChromosortError):
        add_to_training_set(src, ds, "_review")


@pytest.mark.slow
def test_sort_cli_train_and_sort(tmp_path):
    from napari_chromosome_sort.cli import main

    data = _folder(tmp_path / "data", 6, 2)
    model = tmp_path / "m.safetensors"
    assert (
        main(
            [
                "sort",
                "--train",
                str(data),
                "--model-out",
                str(model),
                "--weights",
                "random",
                "--input-size",
                "64",
            ]
        )
        == 0
    )
    assert model_io.load_model(model).metadata["task"] == TASK
    new = _folder(tmp_path / "new", 2, 3, nested=True)
    out = tmp_path / "sorted"
    assert (
        main(
            ["sort", str(model), str(new), "--out", str(out), "--min-confidence", "0.0", "--no-tta"]
        )
        == 0
    )
    assert len(pd.read_csv(out / "predictions.csv")) == 4
    assert main(["sort", str(model)]) == 2


@pytest.mark.slow
def test_real_mitotic_tiles_split_by_spread(tmp_path, giemsa_dir, squeezenet_features_file):
    from validation.sorter import giemsa_tiles

    rows, _ = giemsa_tiles(giemsa_dir, np.random.default_rng(0))
    assert {r[0] for r in rows} == {"mitotic", "interphase"}
    train_root, test_root = tmp_path / "train", tmp_path / "test"
    truth = {}
    for cls, tile, _slide, spread, *_rest, k in rows:
        if spread == "giemsa_3":  # held-out spread
            p = test_root / f"{cls}_{k}.png"
            truth[p.name] = cls
        else:
            p = train_root / cls / f"{spread}_{k}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile).save(p)
    config = sorter_config(weights=str(squeezenet_features_file), views=1, l2=1e-2, input_size=128)
    model = run_to_end(train_sorter(train_root, config))
    result = run_to_end(sort_folder(model, test_root, tmp_path / "out", tta=False))
    pred = dict(
        zip([Path(f).name for f in result.table["file"]], result.table["class"], strict=True)
    )
    accuracy = np.mean([pred[name] == cls for name, cls in truth.items()])
    assert accuracy >= 0.8
