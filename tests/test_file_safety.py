"""What a file from someone else can do: crafted models, manifests, corrections files, images,
concurrent batch runs and killed saves (issue 17 of the project's tracker, items 1-8).

Every case asserts what the user sees (one line, an exit code, no traceback) and what the disk
holds afterwards: nothing written outside the output folder (the whole temporary tree is
snapshotted before and after) and no file of the user changed.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_chromosome_sort.classification.models.model_io import FORMAT_KEY, load_model, save_model
from napari_chromosome_sort.cli import main
from napari_chromosome_sort.errors import ChromosortError

CLASSES = ["A", "B", "C"]


# ------------------------------------------------------------------ helpers


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` with its content (None for folders, the target for links)."""
    state: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[key] = os.readlink(path).encode()
        elif path.is_file():
            state[key] = path.read_bytes()
        else:
            state[key] = None
    return state


def changes(before: dict, after: dict, allowed: str | None = None) -> list[str]:
    """Paths added, removed or changed, except below the folder ``allowed`` (relative)."""
    keys = set(before) | set(after)
    changed = sorted(k for k in keys if before.get(k, b"<absent>") != after.get(k, b"<absent>"))
    if allowed is None:
        return changed
    return [k for k in changed if k != allowed and not k.startswith(f"{allowed}/")]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """``chromosort ARGS`` in this process: (exit code, stderr)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    lines = [line for line in err.splitlines() if "error" in line]
    assert code != 0, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern.lower() in lines[0].lower(), err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small untrained classifier (random SqueezeNet, 32 px input), saved once."""
    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        squeezenet_conv_head,
    )

    torch.manual_seed(0)
    model = ChromosomeClassifier(
        build_backbone("squeezenet1_1", "random"),
        squeezenet_conv_head(len(CLASSES)),
        CLASSES,
        Preprocessing(size=32, appearance="plain", geometry="stretch"),
        "squeezenet_conv",
    )
    return save_model(model, tmp_path_factory.mktemp("model") / "good.safetensors")


def read_model_file(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()[FORMAT_KEY])
    return load_file(str(path)), meta


def craft(good: Path, out: Path, meta_text: str | None = None, tensors=None, **changes) -> Path:
    """A copy of ``good`` with metadata fields replaced (or the raw metadata text) and/or
    tensors replaced."""
    from safetensors.torch import save_file

    own_tensors, meta = read_model_file(good)
    meta.update(changes)
    text = meta_text if meta_text is not None else json.dumps(meta)
    save_file(tensors or own_tensors, str(out), metadata={FORMAT_KEY: text})
    return out


def image_folder(root: Path, names: list[str]) -> Path:
    """Small distinct RGB images at ``root/<name>`` (sub-folders allowed)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
    return root


# ------------------------------------------------------------------ 1. class names become paths

BAD_CLASS_NAMES = {
    "parent": "../X",
    "absolute": "/abs/path",
    "nested": "a/b",
    "backslash": "a\\b",
    "dotdot": "..",
    "hidden": ".git",
    "empty": "",
    "control": "a\nb",
    "long": "x" * 300,
}


@pytest.mark.parametrize("case", sorted(BAD_CLASS_NAMES))
def test_model_class_name_never_becomes_a_path(case, model_file, tmp_path, capsys):
    name = BAD_CLASS_NAMES[case]
    if case == "absolute":
        name = str(tmp_path / "victim")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "a.png").write_bytes(b"the user's own file")
    crafted = craft(model_file, tmp_path / "crafted.safetensors", classes=[name, "B", "C"])
    images = image_folder(tmp_path / "images", ["a.png", "x/b.png"])
    before = snapshot(tmp_path)
    with pytest.raises(ChromosortError, match="class name"):
        load_model(crafted)
    code, err = run_cli(capsys, "sort", crafted, images, "--out", tmp_path / "out")
    assert_one_line_error(code, err, "class name")
    assert changes(before, snapshot(tmp_path)) == []


def test_sort_never_writes_through_a_linked_class_folder(model_file, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(b"the user's own file")
    out = tmp_path / "out"
    out.mkdir()
    for cls in [*CLASSES, "_review"]:
        (out / cls).symlink_to(outside, target_is_directory=True)
    images = image_folder(tmp_path / "images", ["a.png"])
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, "sort", model_file, images, "--out", out, "--no-tta")
    assert_one_line_error(code, err, "outside")
    assert changes(before, snapshot(tmp_path), allowed="out") == []
    assert (outside / "a.png").read_bytes() == b"the user's own file"


def test_sort_refuses_a_class_named_like_its_own_outputs(model_file, tmp_path, capsys):
    crafted = craft(model_file, tmp_path / "m.safetensors", classes=["_review", "B", "C"])
    images = image_folder(tmp_path / "images", ["a.png"])
    code, err = run_cli(capsys, "sort", crafted, images, "--out", tmp_path / "out")
    assert_one_line_error(code, err, "reserved")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 2. paths in dataset tables


def _dataset(root: Path, rows: list[str]) -> Path:
    """A crop dataset whose manifest lists ``rows`` (files created where they are inside)."""
    from napari_chromosome_sort.files.dataset import COLUMNS

    root.mkdir(parents=True)
    records = []
    for file in rows:
        records.append(dict.fromkeys(COLUMNS, "") | {"file": file, "class": "A", "label": 1})
    pd.DataFrame(records, columns=COLUMNS).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.mark.parametrize(
    "row, pattern",
    [("../outside/x.png", "climbs out"), ("{abs}", "absolute"), ("A/\x07.png", "control")],
)
def test_manifest_pointing_outside_is_refused(row, pattern, tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"keep me")
    root = _dataset(tmp_path / "set", [row.format(abs=outside / "x.png")])
    before = snapshot(tmp_path)
    with pytest.raises(ChromosortError, match=f"line 2 is refused.*{pattern}"):
        CropDataset(root)
    assert changes(before, snapshot(tmp_path)) == []


def test_manifest_entry_through_a_link_is_not_followed(tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"keep me")
    root = _dataset(tmp_path / "set", ["A/x.png"])
    (root / "A").symlink_to(outside, target_is_directory=True)
    dataset = CropDataset(root)
    before = snapshot(tmp_path)
    with pytest.raises(ChromosortError, match="leads outside"):
        dataset.remove("A/x.png")
    with pytest.raises(ChromosortError, match="leads outside"):
        dataset.relabel("A/x.png", "B")
    with pytest.raises(ChromosortError, match="not inside the dataset"):
        dataset.remove(outside / "x.png")
    assert changes(before, snapshot(tmp_path), allowed="set/B") == []


@pytest.mark.parametrize(
    "file, pattern",
    [
        ("../outside/x.png", "climbs out"),
        ("{abs}", "absolute"),
        ("manifest.csv", "not <class>/<image>"),
    ],
)
def test_corrections_pointing_outside_are_refused(file, pattern, tmp_path):
    from napari_chromosome_sort.sorter import add_to_training_set

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"keep me")
    image = image_folder(tmp_path / "images", ["k.png"]) / "k.png"
    root = tmp_path / "set"
    root.mkdir()
    (root / "manifest.csv").write_text("file\n")
    log = pd.DataFrame(
        [{"source": str(image.resolve()), "file": file.format(abs=outside / "x.png"), "class": "A"}]
    )
    log.to_csv(root / "corrections.csv", index=False)
    before = snapshot(tmp_path)
    with pytest.raises(ChromosortError, match=f"corrections.csv line 2 is refused.*{pattern}"):
        add_to_training_set(image, root, "B")
    assert changes(before, snapshot(tmp_path)) == []


def test_corrections_file_without_its_columns_is_refused(tmp_path):
    from napari_chromosome_sort.sorter import add_to_training_set

    image = image_folder(tmp_path / "images", ["k.png"]) / "k.png"
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "corrections.csv").write_text("who,what\n1,2\n")
    with pytest.raises(ChromosortError, match="lacks columns source, file, class"):
        add_to_training_set(image, tmp_path / "set", "B")
    with pytest.raises(ChromosortError, match="path separator"):
        add_to_training_set(image, tmp_path / "set", "../B")


# ------------------------------------------------------------------ 3. concurrent batch runs


@pytest.fixture(scope="module")
def spread_dir(tmp_path_factory) -> Path:
    """One sample with one small synthetic spread."""
    from PIL import Image

    from napari_chromosome_sort.synthetic import make_spread

    root = tmp_path_factory.mktemp("spreads")
    (root / "wt").mkdir()
    spread = make_spread(
        seed=5, n_chromosomes=6, shape=(200, 200), n_nuclei=0, n_debris=1, n_clusters=0
    )
    Image.fromarray(spread.image).save(root / "wt" / "s1.png")
    return root


def _batch(spread_dir: Path, model_file: Path, out: Path):
    from napari_chromosome_sort.batch import run_batch
    from napari_chromosome_sort.progress import run_to_end

    return run_to_end(
        run_batch(spread_dir, model_file, out, scheduler="serial", gradcam=False, formats=("png",))
    )


def test_second_batch_on_one_output_stops_and_deletes_nothing(
    spread_dir, model_file, tmp_path, capsys
):
    from napari_chromosome_sort.batch import output_lock

    out = tmp_path / "out"
    unfinished = out / "spreads" / "wt" / ".s1.tmp-1234abcd"
    unfinished.mkdir(parents=True)
    (unfinished / "objects.csv").write_text("label\n1\n")
    before = snapshot(tmp_path)
    with output_lock(out):  # a first run, still writing
        with pytest.raises(ChromosortError, match="another chromosort batch .*pid"):
            _batch(spread_dir, model_file, out)
        code, err = run_cli(capsys, "batch", spread_dir, "--model", model_file, "--out", out)
        assert_one_line_error(code, err, "another chromosort batch")
    after = snapshot(tmp_path)
    assert changes(before, after, allowed="out/.chromosort-batch.lock") == []
    assert (unfinished / "objects.csv").is_file()
    result = _batch(spread_dir, model_file, out)  # the lock died with the first run
    assert result.n_spreads == 1 and result.n_failed == 0
    assert not unfinished.exists()  # a dead run's leftover is cleaned by the next run


def test_resume_recomputes_a_finished_spread_that_lost_its_table(spread_dir, model_file, tmp_path):
    out = tmp_path / "out"
    first = _batch(spread_dir, model_file, out)
    table = out / "spreads" / "wt" / "s1" / "objects.csv"
    assert table.is_file() and first.n_failed == 0
    table.unlink()  # DONE is still there
    second = _batch(spread_dir, model_file, out)
    assert second.n_failed == 0 and second.n_skipped == 0
    assert table.is_file()
    assert len(second.objects) == len(first.objects) > 0
    third = _batch(spread_dir, model_file, out)
    assert third.n_skipped == 1


# ------------------------------------------------------------------ 4. name collisions


def test_sort_keeps_inputs_that_flatten_to_one_name(model_file, tmp_path):
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.sorter import sort_folder

    images = image_folder(tmp_path / "images", ["x/a.png", "x__a.png", "X/A.png"])
    before = snapshot(tmp_path)
    result = run_to_end(
        sort_folder(load_model(model_file), images, tmp_path / "out", min_confidence=0, tta=False)
    )
    placed = [Path(p) for p in result.table["placed_as"]]
    assert len({p.name.lower() for p in placed}) == 3
    for source, dest in zip(result.table["file"], placed, strict=True):
        assert dest.read_bytes() == Path(source).read_bytes()
        assert tmp_path / "out" in dest.parents
    assert changes(before, snapshot(tmp_path), allowed="out") == []


def test_gradcam_files_are_named_by_relative_path(model_file, tmp_path, capsys):
    crops = image_folder(tmp_path / "crops", ["c1/k.png", "c2/k.png", "c1__k.png"])
    cams = tmp_path / "cams"
    args = ["predict", model_file, crops, "--out", tmp_path / "p.csv", "--gradcam", cams]
    code, _ = run_cli(capsys, *args, "--no-tta")
    assert code == 0
    names = sorted(p.name for p in cams.iterdir())
    assert names == ["c1__k_gradcam-2.png", "c1__k_gradcam.png", "c2__k_gradcam.png"]


def test_relabel_onto_an_existing_crop_name_keeps_both(tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset

    root = _dataset(tmp_path / "set", ["A/k.png", "B/k.png"])
    for folder, content in (("A", b"first"), ("B", b"second")):
        (root / folder).mkdir()
        (root / folder / "k.png").write_bytes(content)
    dataset = CropDataset(root)
    moved = dataset.relabel("A/k.png", "B")
    table = dataset.manifest()
    assert sorted(table["file"]) == ["B/k.png", f"B/{moved.name}"]
    assert moved.name != "k.png" and moved.read_bytes() == b"first"
    assert (root / "B" / "k.png").read_bytes() == b"second"


def test_correction_moved_onto_an_existing_name_keeps_both(tmp_path):
    from napari_chromosome_sort.sorter import add_to_training_set

    images = image_folder(tmp_path / "images", ["k.png", "other/k.png"])
    root = tmp_path / "set"
    first = add_to_training_set(images / "k.png", root, "A")
    second = add_to_training_set(images / "other" / "k.png", root, "B")
    moved = add_to_training_set(images / "k.png", root, "B")  # relabel the first copy
    assert second.read_bytes() == (images / "other" / "k.png").read_bytes()
    assert moved.read_bytes() == (images / "k.png").read_bytes() and not first.exists()
    log = pd.read_csv(root / "corrections.csv")
    assert sorted(log["file"]) == sorted([f"B/{second.name}", f"B/{moved.name}"])


# ------------------------------------------------------------------ 5. kill during a model save


def test_a_killed_save_leaves_nothing_after_the_next_save(model_file, tmp_path):
    target = tmp_path / "m.safetensors"
    script = (
        "import os, sys\n"
        "from napari_chromosome_sort.classification.models.model_io import load_model, save_model\n"
        "model = load_model(sys.argv[1])\n"
        "os.fsync = lambda fd: os._exit(9)  # killed after writing, before the rename\n"
        "save_model(model, sys.argv[2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(model_file), str(target)],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 9
    leftovers = list(tmp_path.glob(".m.safetensors.*.tmp.safetensors"))
    assert len(leftovers) == 1 and not target.exists()
    old = time.time() - 3600
    os.utime(leftovers[0], (old, old))
    running = tmp_path / ".m.safetensors.x1.tmp.safetensors"  # a save still under way
    running.write_bytes(b"partial")
    save_model(load_model(model_file), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "m.safetensors"]
    load_model(target)


# ------------------------------------------------------------------ 6. silently wrong inputs


def test_nan_or_integer_tensors_and_duplicate_classes_are_refused(model_file, tmp_path):
    tensors, _ = read_model_file(model_file)
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    nan = dict(tensors) | {key: torch.full_like(tensors[key], float("nan"))}
    integer = dict(tensors) | {key: tensors[key].to(torch.int32)}
    cases = [
        (craft(model_file, tmp_path / "nan.safetensors", tensors=nan), "NaN"),
        (craft(model_file, tmp_path / "int.safetensors", tensors=integer), "torch.int32"),
        (craft(model_file, tmp_path / "dup.safetensors", classes=["a", "a", "c"]), "twice"),
    ]
    for path, pattern in cases:
        with pytest.raises(ChromosortError, match=pattern):
            load_model(path)


def _spread_gray():
    """A small synthetic spread as float grey in [0, 1] (objects dark) and its object count."""
    from napari_chromosome_sort.segmentation import segment_spread
    from napari_chromosome_sort.synthetic import make_spread

    spread = make_spread(
        seed=5, n_chromosomes=6, shape=(200, 200), n_nuclei=0, n_debris=1, n_clusters=0
    )
    gray = spread.image.astype(np.float32).mean(axis=2) / 255.0
    return gray, spread.truth_labels, len(segment_spread(gray).objects)


def test_nan_pixels_are_background_not_objects(tmp_path):
    import tifffile
    from scipy import ndimage as ndi

    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.segmentation import segment_spread

    gray, labels, n_clean = _spread_gray()
    holes = ~ndi.binary_dilation(labels > 0, iterations=6)
    holes &= np.random.default_rng(1).random(gray.shape) < 0.2
    noisy = gray.copy()
    noisy[holes] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", noisy)
    read = read_image(tmp_path / "nan.tif")
    assert np.isfinite(read).all()
    assert np.allclose(read[holes], np.median(gray[~holes]))
    assert len(segment_spread(read).objects) == n_clean
    tifffile.imwrite(tmp_path / "all_nan.tif", np.full((8, 8), np.nan, np.float32))
    with pytest.raises(ChromosortError, match="no finite pixel"):
        read_image(tmp_path / "all_nan.tif")


def test_wide_integer_images_keep_their_contrast():
    from napari_chromosome_sort.files.io import to_gray
    from napari_chromosome_sort.segmentation import segment_spread

    gray, _, n_clean = _spread_gray()
    for dtype in (np.uint32, np.int32, np.int64):
        wide = np.round(gray * 4000).astype(dtype)
        g = to_gray(wide)
        assert g.min() == 0.0 and g.max() == 1.0
        assert len(segment_spread(wide).objects) == n_clean


def test_two_channel_tiff_is_refused_not_misread(tmp_path):
    import tifffile

    from napari_chromosome_sort.files.io import read_image

    tifffile.imwrite(tmp_path / "two.tif", np.zeros((144, 192, 2), np.uint16))
    with pytest.raises(ChromosortError, match="has 2 channels"):
        read_image(tmp_path / "two.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((144, 192, 3), np.uint8))
    assert read_image(tmp_path / "rgb.tif").shape == (144, 192, 3)


def test_a_uniform_image_is_reported(model_file, tmp_path, capsys):
    from PIL import Image

    from napari_chromosome_sort.classification.predict import predict_spread

    white = np.full((120, 120, 3), 255, np.uint8)
    Image.fromarray(white).save(tmp_path / "white.png")
    with pytest.raises(ChromosortError, match="uniform"):
        predict_spread(load_model(model_file), white)
    args = ["predict", model_file, tmp_path / "white.png", "--spreads", "--out", tmp_path / "p.csv"]
    code, err = run_cli(capsys, *args)
    assert code == 0 and "white.png: skipped" in err and "uniform" in err
    code, err = run_cli(capsys, "segment", tmp_path / "white.png", "--out", tmp_path / "seg")
    assert code == 0 and "uniform" in err


# ------------------------------------------------------------------ 7. tracebacks and memory

CRAFTED_METADATA = {
    "dropout 5.0": (
        {"head": {"kind": "pooled", "in_dim": 4352, "dropout": 5.0, "hidden": 0}},
        "dropout",
    ),
    "head width 1e12": ({"head": {"kind": "pooled", "in_dim": 10**12}}, "head input width"),
    "head width off": ({"head": {"kind": "avgpool_fc", "in_dim": 7}}, "does not fit"),
    "string input size": ({"input_size": "224"}, "whole number"),
    "negative input size": ({"input_size": -5}, "outside the allowed range"),
    "input size 100000": (
        {"input_size": 100000, "preprocessing": {"size": 100000}},
        "outside the allowed range",
    ),
    "classes not a list": ({"classes": 5}, "classes must be a list"),
    "one class": ({"classes": ["A"]}, "2..256 classes"),
    "class not text": ({"classes": ["A", 2, "C"]}, "is not text"),
    "unknown backbone": ({"backbone": "vgg99"}, "unknown backbone"),
    "unknown geometry": ({"preprocessing": {"size": 32, "geometry": "warp"}}, "geometry"),
    "nan mean": ({"preprocessing": {"size": 32, "mean": [float("nan"), 0, 0]}}, "mean"),
    "no head": ({"head": None}, "head must be a JSON object"),
    "training a list": ({"training": [1, 2]}, "training must be a JSON object"),
    "malformed version": ({"format_version": "1.0"}, "malformed format version"),
    "future version": ({"format_version": 99}, "newer"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_METADATA))
def test_crafted_metadata_gives_one_line(case, model_file, tmp_path, capsys):
    fields, pattern = CRAFTED_METADATA[case]
    crafted = craft(model_file, tmp_path / "m.safetensors", **fields)
    before = snapshot(tmp_path)
    with pytest.raises(ChromosortError, match=pattern):
        load_model(crafted)
    image_folder(tmp_path / "crops", ["a.png"])
    args = ["predict", crafted, tmp_path / "crops", "--out", tmp_path / "out" / "p.csv"]
    code, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "is refused")
    assert changes(before, snapshot(tmp_path), allowed="crops") == []


def test_deeply_nested_or_huge_metadata_gives_one_line(model_file, tmp_path):
    nested = '{"classes": ' + "[" * 100_000 + "]" * 100_000 + "}"
    crafted = craft(model_file, tmp_path / "deep.safetensors", meta_text=nested)
    with pytest.raises(ChromosortError, match="nested too deeply|corrupt"):
        load_model(crafted)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (the pixel data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1))  # one row only
    body = chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_huge_image_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    import tifffile

    from napari_chromosome_sort.files import io

    huge = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ChromosortError, match="huge.png is far too large; at most 100 million"):
        io.read_image(huge)
    wide = _png_header_only(tmp_path / "wide.png", 12000, 9000)  # Pillow would decode this
    with pytest.raises(ChromosortError, match="12000 x 9000 pixels; at most 100 million"):
        io.read_image(wide)
    code, err = run_cli(capsys, "segment", huge, "--out", tmp_path / "seg")
    assert_one_line_error(code, err, "million pixels")
    monkeypatch.setattr(io, "MAX_PIXELS", 10_000)
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((200, 200), np.uint8))
    with pytest.raises(ChromosortError, match="200 x 200 pixels"):
        io.read_image(tmp_path / "big.tif")


def test_training_input_size_has_a_stated_limit():
    from napari_chromosome_sort.classification.features import Preprocessing

    with pytest.raises(ChromosortError, match="input size 100000 is outside .*16..1024"):
        Preprocessing(size=100000)


def test_predict_out_pointing_at_a_folder(model_file, tmp_path, capsys):
    crops = image_folder(tmp_path / "crops", ["a.png"])
    (tmp_path / "results").mkdir()
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, "predict", model_file, crops, "--out", tmp_path / "results")
    assert_one_line_error(code, err, "is a folder")
    assert changes(before, snapshot(tmp_path)) == []


def test_mathtext_class_and_sample_names_plot(tmp_path):
    from napari_chromosome_sort.batch import write_reports

    names = ["$\\frac{a$", "$x$", "a$b"]
    rng = np.random.default_rng(0)
    objects = pd.DataFrame(
        {
            "sample": np.repeat(["$wt$", "mut"], 30),
            "spread": np.tile(np.repeat(["s1", "s2", "s3"], 10), 2),
            "label": np.arange(60),
            "class": rng.choice(names, 60),
        }
    )
    _, _, files = write_reports(tmp_path, objects, classes=names, formats=("png", "svg"))
    assert {tmp_path / "stacked_bar.png", tmp_path / "stacked_bar.svg"} <= set(files)
    assert (tmp_path / "stacked_bar.png").stat().st_size > 1000


# ------------------------------------------------------------------ 8. confusing messages


def test_pickled_checkpoint_is_refused_for_safety(tmp_path, capsys):
    import collections

    checkpoint = collections.OrderedDict(net=torch.nn.Linear(2, 2), epoch=3)
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    args = ["import-model", tmp_path / "checkpoint.pth", "--classes", "A,B,C"]
    code, err = run_cli(capsys, *args, "--out", tmp_path / "m.safetensors")
    assert_one_line_error(code, err, "refused for safety")
    assert "weights_only" not in err
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_subprocess_prints_one_line_and_no_traceback(model_file, tmp_path):
    crafted = craft(model_file, tmp_path / "m.safetensors", classes=["../X", "B", "C"])
    image_folder(tmp_path / "images", ["a.png"])
    before = snapshot(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "napari_chromosome_sort.cli", "sort", str(crafted)]
        + [str(tmp_path / "images"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "path separator" in done.stderr
    assert changes(before, snapshot(tmp_path)) == []


# ------------------------------------------------------------------ the one check for names


def test_one_check_for_names_and_paths(tmp_path):
    from napari_chromosome_sort.files.safety import check_name, check_relative, flat_names, inside

    assert check_name("type A 2") == "type A 2"
    for bad in ["", " ", "a/b", "a\\b", "c:x", "..", ".x", " a", "a\tb", "y" * 101, 3]:
        with pytest.raises(ChromosortError):
            check_name(bad)
    assert str(check_relative("A/x.png")) == "A/x.png"
    for bad in ["/etc/passwd", "C:\\x.png", "A/../../x.png", "..", "", "A/\0.png"]:
        with pytest.raises(ChromosortError):
            check_relative(bad)
    (tmp_path / "A").mkdir()
    assert inside(tmp_path, "A/x.png") == tmp_path / "A" / "x.png"
    long = flat_names(["d" * 150 + "/" + "e" * 150 + ".png", "a/b.png", "a__b.png", "A__B.png"])
    assert len(long[0].encode()) <= 200 and long[0].endswith(".png")
    assert long[1:] == ["a__b.png", "a__b-2.png", "A__B-3.png"]


def test_a_model_that_could_not_be_loaded_is_not_saved(model_file, tmp_path):
    model = load_model(model_file)
    model.classes[0] = "../A"
    with pytest.raises(ChromosortError, match="cannot save this model: .*path separator"):
        save_model(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_crafted_metrics_in_a_model_give_one_line(model_file, tmp_path, capsys):
    crafted = craft(
        model_file,
        tmp_path / "m.safetensors",
        metrics={"confusion": "not a matrix", "classes": CLASSES, "accuracy": "high"},
    )
    calls = pd.DataFrame({"sample": ["wt"] * 4 + ["mut"] * 4, "class": list("ABCA" * 2)})
    calls.to_csv(tmp_path / "calls.csv", index=False)
    code, err = run_cli(
        capsys, "readout", tmp_path / "calls.csv", "--out", tmp_path / "out", "--model", crafted
    )
    # the crafted confusion is caught where the readout reads it to correct the shares
    assert_one_line_error(code, err, "m.safetensors (stored cross-validated confusion) has no")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_given_as_a_link_knows_its_own_files(tmp_path, capsys):
    """Files chromosort wrote through an output folder given as a link are its own when the
    folder is given as the link's target, and back (a batch resolves --out, readout does
    not): no false "was not written by chromosort"."""
    from napari_chromosome_sort.files.safety import output_path, record_written

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (real / "summary.csv").write_text("a\n1\n")
    record_written([real / "summary.csv"])
    assert output_path(tmp_path / "link" / "summary.csv") == tmp_path / "link" / "summary.csv"
    (real / "stats.txt").write_text("x")
    record_written([tmp_path / "link" / "stats.txt"])
    assert output_path(real / "stats.txt") == real / "stats.txt"
    (real / "stats.txt").write_text("changed by the user")
    with pytest.raises(ChromosortError, match="not written by chromosort"):
        output_path(tmp_path / "link" / "stats.txt")
