"""Labelled-crop store: add / relabel / remove, manifest, atomic writes, bad inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.dataset import CropDataset, sanitise_class_name, scan_image_folder


def _crop(value=50):
    img = np.full((20, 24, 3), 230, np.uint8)
    img[5:15, 8:16] = value
    return img


def test_add_relabel_remove_keep_files_and_manifest(tmp_path):
    ds = CropDataset(tmp_path / "set")
    assert ds.classes == ["A", "B", "C"]
    p1 = ds.add(_crop(), "A", source="spread1.png", label=7, bbox=(1, 2, 30, 40))
    p2 = ds.add(_crop(60), "B", source="spread1.png", label=8)
    assert p1.parent.name == "A" and p1.exists() and p2.parent.name == "B"
    m = ds.manifest()
    assert list(m.columns) == [
        "file",
        "class",
        "source",
        "label",
        "bbox_y0",
        "bbox_x0",
        "bbox_y1",
        "bbox_x1",
        "labelled_at",
    ]
    assert (
        m.loc[0, "label"] == 7 and m.loc[0, "bbox_x1"] == 40 and m.loc[0, "source"] == "spread1.png"
    )
    assert ds.counts() == {"A": 1, "B": 1, "C": 0}
    before = np.asarray(Image.open(p1))
    p1b = ds.relabel(p1, "C")
    assert not p1.exists() and p1b.parent.name == "C"
    assert np.array_equal(np.asarray(Image.open(p1b)), before)  # nothing lost
    assert ds.counts() == {"A": 0, "B": 1, "C": 1}
    assert ds.manifest().loc[0, "label"] == 7  # row kept, only class/file changed
    ds.remove(p2)
    assert not p2.exists() and ds.counts()["B"] == 0 and len(ds.manifest()) == 1
    # reopening sees the same state
    again = CropDataset(tmp_path / "set")
    assert again.counts() == {"A": 0, "B": 0, "C": 1}
    assert [c for _, c in again.items()] == ["C"]


def test_free_text_classes_are_sanitised(tmp_path):
    ds = CropDataset(tmp_path / "set", classes=("tight", "arms open"))
    p = ds.add(_crop(), "sep/arated: C")
    assert p.parent.name == sanitise_class_name("sep/arated: C") and "/" not in p.parent.name
    assert "arms open" in ds.classes
    with pytest.raises(ChromosortError):
        sanitise_class_name("///")


def test_atomic_write_leaves_no_partial_files(tmp_path, monkeypatch):
    ds = CropDataset(tmp_path / "set")
    ds.add(_crop(), "A")
    manifest_before = ds.manifest_path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        ds.add(_crop(), "B")
    monkeypatch.undo()
    assert ds.manifest_path.read_bytes() == manifest_before
    leftovers = [p for p in (tmp_path / "set").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert not list((tmp_path / "set" / "B").iterdir())


def test_unknown_file_and_bad_bbox(tmp_path):
    ds = CropDataset(tmp_path / "set")
    with pytest.raises(ChromosortError):
        ds.relabel("A/nothing.png", "B")
    with pytest.raises(ChromosortError):
        ds.add(_crop(), "A", bbox=(1, 2, 3))


def test_scan_image_folder(tmp_path):
    root = tmp_path / "imgs"
    for cls, n in (("a", 2), ("b", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_crop()).save(root / cls / f"{i}.png")
    (root / "b" / "notes.txt").write_text("not an image")
    paths, targets, classes = scan_image_folder(root)
    assert classes == ["a", "b"] and len(paths) == 5 and targets.tolist() == [0, 0, 1, 1, 1]
    (root / "c").mkdir()
    with pytest.raises(ChromosortError, match="no images"):
        scan_image_folder(root)
    with pytest.raises(ChromosortError, match="at least 2"):
        scan_image_folder(root / "a")
    with pytest.raises(ChromosortError, match="cannot read"):
        scan_image_folder(tmp_path / "missing")
