"""``chromosort import-labels``: spreads with class boxes -> the labelled crop dataset."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_chromosome_sort.cli import main
from napari_chromosome_sort.files.dataset import CropDataset
from napari_chromosome_sort.files.label_import import import_labels, labelled_crops
from napari_chromosome_sort.progress import run_to_end
from napari_chromosome_sort.synthetic import make_spread


def _yolo_line(row, shape, cls_index) -> str:
    h, w = shape[:2]
    cy = (row.bbox_y0 + row.bbox_y1) / 2 / h
    cx = (row.bbox_x0 + row.bbox_x1) / 2 / w
    bh = (row.bbox_y1 - row.bbox_y0) / h
    bw = (row.bbox_x1 - row.bbox_x0) / w
    return f"{cls_index} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


@pytest.fixture(scope="module")
def spread_folder(tmp_path_factory):
    """Two synthetic Giemsa spreads with YOLO boxes (class 0/1/2 = A/B/C) and a COCO file,
    plus one box where there is no chromosome."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    coco = {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": i + 1, "name": c} for i, c in enumerate("ABC")]
    truth = {}
    for seed in (1, 2):
        spread = make_spread(seed=seed, n_chromosomes=12, n_clusters=0, n_nuclei=1)
        name = f"spread{seed}.png"
        Image.fromarray(spread.image).save(root / "images" / name)
        rows = spread.truth[spread.truth["kind"] == "chromosome"]
        lines = [_yolo_line(r, spread.image.shape, "ABC".index(r.cls)) for r in rows.itertuples()]
        lines.append("1 0.010 0.010 0.008 0.008")  # a box in an empty corner
        (root / "labels" / f"spread{seed}.txt").write_text("\n".join(lines) + "\n")
        coco["images"].append({"id": seed, "file_name": name})
        for r in rows.itertuples():
            x, y = float(r.bbox_x0), float(r.bbox_y0)
            bbox = [x, y, float(r.bbox_x1) - x, float(r.bbox_y1) - y]
            coco["annotations"].append(
                {"image_id": seed, "category_id": "ABC".index(r.cls) + 1, "bbox": bbox}
            )
        truth[name] = rows
    (root / "boxes.json").write_text(json.dumps(coco))
    return root, truth


def test_yolo_boxes_become_the_pipelines_crops_under_their_class(spread_folder, tmp_path):
    root, truth = spread_folder
    out = tmp_path / "dataset"
    report = run_to_end(import_labels(root / "images", root / "labels", out, "yolo", "A,B,C"))
    summary = report.to_dict()
    assert [s["spread"] for s in summary["spreads"]] == sorted(truth)
    for s in summary["spreads"]:
        assert s["unmatched_boxes"] >= 1  # the empty-corner box is reported, never stored
        assert s["stored"] + s["unmatched_boxes"] == s["boxes"]
        assert s["stored"] >= 0.8 * len(truth[s["spread"]])
    manifest = CropDataset(out).manifest()
    assert len(manifest) == summary["total"]["stored"]
    assert set(manifest["source"]) == set(truth)
    # each stored crop is the pipeline's crop of the object, under the class of its box
    name = sorted(truth)[0]
    image = np.asarray(Image.open(root / "images" / name).convert("RGB"))
    rows = truth[name]
    boxes = rows[["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].to_numpy(float)
    classes = np.array(["ABC".index(c) for c in rows["cls"]])
    labelled = labelled_crops(image, boxes, classes)
    mine = manifest[manifest["source"] == name].sort_values("label")
    for row in mine.itertuples():
        i = [c.label for c in labelled.crops].index(row.label)
        assert "ABC"[labelled.targets[i]] == row._2  # the class column
        stored = np.asarray(Image.open(out / row.file).convert("RGB"))
        assert np.array_equal(stored, labelled.crops[i].pixels)


def test_coco_boxes_give_the_same_dataset_as_yolo(spread_folder, tmp_path):
    root, _ = spread_folder
    yolo = run_to_end(
        import_labels(root / "images", root / "labels", tmp_path / "y", "yolo", "A,B,C")
    )
    coco = run_to_end(import_labels(root / "images", root / "boxes.json", tmp_path / "c", "coco"))
    assert coco.counts == yolo.counts
    assert all(s["unmatched_boxes"] == 0 for s in coco.to_dict()["spreads"])


def test_existing_crops_are_kept_unless_overwrite(spread_folder, tmp_path, capsys):
    root, _ = spread_folder
    out = tmp_path / "dataset"
    argv = ["import-labels", str(root / "images"), "--boxes", str(root / "labels")]
    argv += ["--classes", "A,B,C", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    files = sorted(p.name for p in out.rglob("*.png"))
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*.png")) == files  # nothing touched
    assert main([*argv, "--overwrite"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["counts"] == first["counts"]  # replaced, not doubled
    assert len(pd.read_csv(out / "manifest.csv")) == first["total"]["stored"]


def test_bad_input_gets_one_line(spread_folder, tmp_path, capsys):
    root, _ = spread_folder
    base = ["import-labels", str(root / "images"), "--out", str(tmp_path / "d"), "--quiet"]
    assert main([*base, "--boxes", str(root / "labels")]) == 2  # YOLO without class names
    assert "--classes" in capsys.readouterr().err
    assert main([*base, "--boxes", str(root / "labels"), "--classes", "A,B"]) == 2
    assert "class index 2" in capsys.readouterr().err
    coco = [*base, "--boxes", str(root / "boxes.json"), "--format", "coco", "--classes", "A,X"]
    assert main(coco) == 2
    assert "no category 'X'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(
            [
                "import-labels",
                str(empty),
                "--boxes",
                str(root / "labels"),
                "--classes",
                "A,B,C",
                "--out",
                str(tmp_path / "d2"),
            ]
        )
        == 2
    )
    assert "no images" in capsys.readouterr().err


def test_real_giemsa_spread_labels(giemsa_dir, tmp_path):
    """The real annotated spread 3.png: its YOLO boxes give the labelled crops."""
    spreads = tmp_path / "spreads"
    spreads.mkdir()
    shutil.copy(giemsa_dir / "images" / "3.png", spreads / "3.png")
    out = tmp_path / "dataset"
    report = run_to_end(import_labels(spreads, giemsa_dir / "labels", out, "yolo", "a,b,c"))
    spread = report.to_dict()["spreads"][0]
    assert spread["boxes"] == 47
    assert spread["stored"] >= 45
    assert report.counts["a"] >= 40  # the A-rich spread
