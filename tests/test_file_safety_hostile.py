"""Never delete or overwrite what the tool did not write (issue 29 of the project's tracker).

Each reproduction of the issue is one test here, worst first (1: deletes outside its folder,
2: overwrites user files, 3: writes outside the folder asked for, 4: silent wrong batch answers,
5: half-written files under final names, 6: tracebacks and values that pass checks but should
not). Every test asserts what the user sees (one line, a non-zero exit code, no traceback) and
that no byte outside the tool's own files changed (the tree is hashed before and after).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from trees import tree_hash

from napari_chromosome_sort.classification.models.model_io import FORMAT_KEY, save_model
from napari_chromosome_sort.cli import main
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import run_to_end

CLASSES = ["A", "B", "C"]


# ------------------------------------------------------------------ helpers


def changed(before: dict, after: dict, allowed: tuple[str, ...] = ()) -> list[str]:
    """Paths added, removed or changed, except below the folders ``allowed`` (relative)."""
    keys = set(before) | set(after)
    diff = sorted(k for k in keys if before.get(k) != after.get(k))
    return [k for k in diff if not any(k == a or k.startswith(f"{a}/") for a in allowed)]


def cli(capsys, *args) -> tuple[int, str]:
    """``chromosort ARGS`` in this process: (exit code, stderr)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_line(code: int, err: str, pattern: str) -> None:
    lines = [line for line in err.splitlines() if "error" in line]
    assert code != 0, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern.lower() in lines[0].lower(), err


def write_png(path: Path, seed: int = 0, size: int = 24) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def write_spread(path: Path, seed: int = 0, n: int = 6) -> Path:
    """A small synthetic spread (a few chromosomes on 160 x 160 pixels)."""
    from PIL import Image

    from napari_chromosome_sort.synthetic import make_spread

    spread = make_spread(seed=seed, n_chromosomes=n, shape=(160, 160), n_nuclei=0, n_debris=1,
                         n_clusters=0)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(spread.image).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
    return path


def build_model(classes=CLASSES, seed: int = 0):
    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        squeezenet_conv_head,
    )

    torch.manual_seed(seed)
    return ChromosomeClassifier(
        build_backbone("squeezenet1_1", "random"),
        squeezenet_conv_head(len(classes)),
        list(classes),
        Preprocessing(size=32, appearance="plain", geometry="stretch"),
        "squeezenet_conv",
    )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_model(build_model(), tmp_path_factory.mktemp("model") / "good.safetensors")


@pytest.fixture(scope="module")
def other_model_file(tmp_path_factory) -> Path:
    """A model with other classes (to replace the first one during a batch)."""
    model = build_model(["P", "Q"], seed=1)
    return save_model(model, tmp_path_factory.mktemp("model2") / "other.safetensors")


def craft(good: Path, out: Path, tensors=None, **fields) -> Path:
    """A copy of ``good`` with metadata fields and/or tensors replaced."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(good), "pt") as handle:
        meta = json.loads(handle.metadata()[FORMAT_KEY])
    meta.update(fields)
    save_file(tensors or load_file(str(good)), str(out), metadata={FORMAT_KEY: json.dumps(meta)})
    return out


def batch(inputs: Path, model: Path, out: Path, **kw):
    from napari_chromosome_sort.batch import run_batch

    kw = {"gradcam": False, "formats": ("png",), **kw}
    return run_to_end(run_batch(inputs, model, out, "serial", **kw))


# ------------------------------------------------------------------ 1. deletes outside its folder


@pytest.fixture(scope="module")
def spreads(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spreads")
    write_spread(root / "s1" / "x0.png", 0)
    write_spread(root / "s1" / "x1.png", 1)
    return root


def test_resume_never_deletes_through_a_linked_sample_folder(spreads, model_file, tmp_path):
    """Issue 29, 1: ``spreads/<sample>`` a link to a user folder; resuming must not rmtree there."""
    out = tmp_path / "out"
    batch(spreads, model_file, out)
    victim = tmp_path / "victim"
    (victim / "x0").mkdir(parents=True)  # named like a stale spread result
    (victim / "x0" / "precious.txt").write_text("mine")
    (victim / ".x1.tmp-1234").mkdir()  # named like a leftover of ours
    (victim / ".x1.tmp-1234" / "precious.txt").write_text("mine too")
    shutil.rmtree(out / "spreads" / "s1")
    (out / "spreads" / "s1").symlink_to(victim, target_is_directory=True)
    before = tree_hash(tmp_path)
    with pytest.raises(ChromosortError, match="link"):
        batch(spreads, model_file, out)
    assert changed(before, tree_hash(tmp_path), allowed=("out",)) == []
    assert (victim / "x0" / "precious.txt").read_text() == "mine"


def test_cache_folder_of_user_arrays_is_never_pruned(tmp_path):
    """Issue 29, 1: ``train --cache-dir FOLDER`` pruned any ``*/*.npy`` there past the limit."""
    from napari_chromosome_sort.classification import features as F

    data = tmp_path / "data"
    for i in range(3):
        (data / f"run{i}").mkdir(parents=True)
        np.save(data / f"run{i}" / "arr.npy", np.arange(1000.0))
    (data / "inner-cv").mkdir()
    np.save(data / "inner-cv" / "x.npy", np.zeros(3))
    before = tree_hash(tmp_path)
    assert F.prune_cache(data, limit=0) == 0
    assert changed(before, tree_hash(tmp_path)) == []


def test_cache_prunes_only_its_own_files(tmp_path, monkeypatch):
    """The tool's own cache folder is pruned, but only of names the cache gives its files; a
    user's array in it stays."""
    from napari_chromosome_sort.classification import features as F
    from napari_chromosome_sort.classification.models.backbones import build_backbone

    monkeypatch.setenv("CHROMOSORT_ONNX", "0")
    backbone = build_backbone("squeezenet1_1", "random")
    prep = F.Preprocessing(size=32, appearance="plain", geometry="stretch")
    cache = tmp_path / "cache"
    crops = [np.full((20, 20, 3), v, np.uint8) for v in (10, 90, 170)]
    F.clear_memory_cache()
    run_to_end(F.extract_features(backbone, crops, prep, views=1, cache_dir=cache))
    ours = sorted(cache.glob("*/*.npy"))
    assert len(ours) == 3
    user = ours[0].parent / "mine.npy"
    np.save(user, np.ones(5))
    assert F.prune_cache(cache, limit=0) == 3
    assert user.is_file() and not any(p.exists() for p in ours)
    F.clear_memory_cache()


# ------------------------------------------------------------------ 2. overwrites user files


def test_sort_never_replaces_crops_already_in_the_dataset(model_file, tmp_path, capsys):
    """Issue 29, 2: ``sort M incoming/ --out dataset/`` replaced same-named crops in dataset/."""
    incoming = tmp_path / "incoming"
    write_png(incoming / "k.png", 1)
    dataset = tmp_path / "dataset"
    for folder in [*CLASSES, "_review"]:
        write_png(dataset / folder / "k.png", 2)
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "sort", model_file, incoming, "--out", dataset, "--no-tta")
    one_line(code, err, "not written by chromosort")
    assert changed(before, tree_hash(tmp_path)) == []
    code, err = cli(capsys, "sort", model_file, incoming, "--out", dataset, "--no-tta",
                    "--overwrite")  # fmt: skip
    assert code == 0, err


def test_sort_again_into_its_own_output_is_allowed(model_file, tmp_path, capsys):
    incoming = tmp_path / "incoming"
    write_png(incoming / "k.png", 1)
    out = tmp_path / "sorted"
    assert cli(capsys, "sort", model_file, incoming, "--out", out, "--no-tta")[0] == 0
    assert cli(capsys, "sort", model_file, incoming, "--out", out, "--no-tta")[0] == 0
    (out / "predictions.csv").write_text("edited by the user\n")
    code, err = cli(capsys, "sort", model_file, incoming, "--out", out, "--no-tta")
    one_line(code, err, "predictions.csv")


def test_predict_out_naming_an_input_is_refused(model_file, tmp_path, capsys):
    """Issue 29, 2: ``predict M x.png --out x.png`` replaced the input image with the CSV."""
    image = write_png(tmp_path / "x.png")
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "predict", model_file, image, "--out", image, "--no-tta")
    one_line(code, err, "one of the inputs")
    code, err = cli(capsys, "predict", model_file, image, "--out", image, "--overwrite")
    one_line(code, err, "one of the inputs")
    assert changed(before, tree_hash(tmp_path)) == []


def test_gradcam_never_replaces_a_users_file(model_file, tmp_path, capsys):
    """Issue 29, 2: Grad-CAM output replaced an existing ``a_gradcam.png`` in the folder given."""
    image = write_png(tmp_path / "in" / "a.png")
    cams = tmp_path / "cams"
    write_png(cams / "a_gradcam.png", 5)
    before = tree_hash(tmp_path)
    args = ["predict", model_file, image, "--out", tmp_path / "p.csv", "--gradcam", cams]
    code, err = cli(capsys, *args, "--no-tta")
    one_line(code, err, "a_gradcam.png")
    assert changed(before, tree_hash(tmp_path)) == []
    assert cli(capsys, *args, "--no-tta", "--overwrite")[0] == 0
    assert cli(capsys, *args, "--no-tta")[0] == 0  # now the tool's own file


# ------------------------------------------------------------------ 3. writes outside the folder


@pytest.mark.parametrize("name", ["..png", "...png"])
def test_segment_image_named_dots_never_writes_outside(name, tmp_path, capsys):
    """Issue 29, 3: a spread named ``..png`` wrote at the ``--out`` root, ``...png`` (stem
    ``..``) into its parent."""
    image = write_spread(tmp_path / "in" / name)
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "segment", image, "--out", out, "--quiet")
    one_line(code, err, "output folder")
    assert changed(before, tree_hash(tmp_path)) == []


def _linked_file(tmp_path: Path, link: Path) -> Path:
    """``link`` -> a user file outside; returns the user file."""
    target = tmp_path / "elsewhere" / f"user-{link.name}"
    target.parent.mkdir(exist_ok=True)
    target.write_text("the user's own text\n")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return target


@pytest.mark.parametrize("name", [".chromosort-batch.lock", "stats.txt", "objects.csv"])
def test_batch_never_writes_through_a_linked_output(name, spreads, model_file, tmp_path):
    """Issue 29, 3: the lock, ``stats.txt`` and ``objects.csv`` written through a link truncated
    the link's target."""
    out = tmp_path / "out"
    target = _linked_file(tmp_path, out / name)
    before = tree_hash(tmp_path)
    with pytest.raises(ChromosortError, match="link"):
        batch(spreads, model_file, out)
    assert target.read_text() == "the user's own text\n"
    assert changed(before, tree_hash(tmp_path), allowed=("out",)) == []


def test_segment_never_writes_through_a_linked_table(tmp_path, capsys):
    """Issue 29, 3: ``<spread>/objects.csv`` written in place through a link."""
    image = write_spread(tmp_path / "in" / "s.png")
    out = tmp_path / "out"
    target = _linked_file(tmp_path, out / "s" / "objects.csv")
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "segment", image, "--out", out, "--quiet")
    one_line(code, err, "link")
    assert target.read_text() == "the user's own text\n"
    assert changed(before, tree_hash(tmp_path)) == []


def test_gradcam_never_writes_through_a_link(model_file, tmp_path, capsys):
    image = write_png(tmp_path / "in" / "a.png")
    cams = tmp_path / "cams"
    target = _linked_file(tmp_path, cams / "a_gradcam.png")
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "predict", model_file, image, "--out", tmp_path / "p.csv",
                    "--gradcam", cams, "--no-tta")  # fmt: skip
    one_line(code, err, "link")
    assert target.read_text() == "the user's own text\n"
    assert changed(before, tree_hash(tmp_path)) == []


def test_dataset_never_writes_through_a_linked_class_folder(tmp_path):
    """Issue 29, 3: a class folder that is a link let ``CropDataset.add`` write outside."""
    from napari_chromosome_sort.files.dataset import CropDataset

    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "ds"
    root.mkdir()
    (root / "A").symlink_to(outside, target_is_directory=True)
    before = tree_hash(tmp_path)
    with pytest.raises(ChromosortError, match="link"):
        CropDataset(root).add(np.zeros((8, 8, 3), np.uint8), "A", source="s.png")
    assert changed(before, tree_hash(tmp_path)) == []


def test_relabel_never_moves_a_crop_through_a_linked_class_folder(tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset

    root = tmp_path / "ds"
    dataset = CropDataset(root)
    crop = dataset.add(np.zeros((8, 8, 3), np.uint8), "A", source="s.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "B").symlink_to(outside, target_is_directory=True)
    before = tree_hash(tmp_path)
    with pytest.raises(ChromosortError, match="link"):
        dataset.relabel(crop, "B")
    assert changed(before, tree_hash(tmp_path)) == []


def test_sorter_correction_never_writes_through_a_linked_class_folder(tmp_path):
    """Issue 29, 3: the sorter's training set took a linked class folder (only the source was
    checked)."""
    from napari_chromosome_sort.sorter import add_to_training_set

    image = write_png(tmp_path / "img.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "train"
    root.mkdir()
    (root / "A").symlink_to(outside, target_is_directory=True)
    before = tree_hash(tmp_path)
    with pytest.raises(ChromosortError, match="link"):
        add_to_training_set(image, root, "A")
    assert changed(before, tree_hash(tmp_path)) == []


@pytest.mark.parametrize("row", ["manifest.csv", "A"])
def test_manifest_row_naming_the_manifest_or_a_class_folder(row, tmp_path):
    """Issue 29, 3: a row naming ``manifest.csv`` made ``remove()`` delete the manifest; one
    naming a class folder made ``relabel`` move the whole folder."""
    from napari_chromosome_sort.files.dataset import CropDataset

    root = tmp_path / "ds"
    dataset = CropDataset(root)
    dataset.add(np.zeros((8, 8, 3), np.uint8), "A", source="s.png")
    table = pd.read_csv(root / "manifest.csv")
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "file": row}
    table.to_csv(root / "manifest.csv", index=False)
    before = tree_hash(tmp_path)
    with pytest.raises(ChromosortError, match="line 3"):
        CropDataset(root).remove(row)
    with pytest.raises(ChromosortError, match="line 3"):
        CropDataset(root).relabel(row, "B")
    assert changed(before, tree_hash(tmp_path)) == []


@pytest.mark.parametrize("kind", ["absolute", "parent"])
def test_napari_reader_never_loads_pixels_from_outside(kind, tmp_path):
    """Issue 29, 3: the napari reader loaded pixels from ``/abs`` or ``../`` manifest rows."""
    from napari_chromosome_sort._reader import read_dataset
    from napari_chromosome_sort.files.dataset import COLUMNS

    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.fromarray(np.full((10, 10, 3), 123, np.uint8)).save(secret)
    root = tmp_path / "ds"
    root.mkdir()
    file = str(secret) if kind == "absolute" else "../secret.png"
    row = {c: "" for c in COLUMNS} | {"file": file, "class": "A"}
    pd.DataFrame([row], columns=COLUMNS).to_csv(root / "manifest.csv", index=False)
    data, meta, _ = read_dataset(str(root))[0]
    assert not (np.asarray(data) == 123).any()
    assert "empty" in meta["name"]


# ------------------------------------------------------------------ 4. silent wrong batch answers


def test_colliding_spread_names_are_made_distinct_and_reported(model_file, tmp_path):
    """Issue 29, 4: ``x.png`` + ``x.jpg`` and ``sub/y.png`` + ``sub__y.png`` were reported as 4
    done while only 2 results existed."""
    inputs = tmp_path / "in"
    write_spread(inputs / "s" / "x.png", 0)
    write_spread(inputs / "s" / "x.jpg", 1)
    write_spread(inputs / "s" / "sub" / "y.png", 2)
    write_spread(inputs / "s" / "sub__y.png", 3)
    result = batch(inputs, model_file, tmp_path / "out")
    dones = list((tmp_path / "out" / "spreads").glob("*/*/DONE"))
    assert result.n_spreads == 4 and len(dones) == 4
    images = {json.loads(d.read_text())["image"] for d in dones}
    assert len(images) == 4  # each id stands for one image (reversible through DONE)
    assert len(result.renamed) == 4
    assert result.objects.groupby(["sample", "spread"]).ngroups == 4


def test_resume_redoes_a_replaced_image_and_drops_a_removed_one(model_file, tmp_path):
    """Issue 29, 4: an image replaced under its name kept its stale result on resume; a removed
    input was still counted; an emptied finished table was dropped without a word."""
    inputs = tmp_path / "in"
    for i in range(3):
        write_spread(inputs / "s" / f"x{i}.png", i)
    out = tmp_path / "out"
    first = batch(inputs, model_file, out)
    assert first.n_spreads == 3
    # replaced under the same name, size and time
    st = os.stat(inputs / "s" / "x0.png")
    write_spread(inputs / "s" / "x0.png", 10, n=3)
    os.utime(inputs / "s" / "x0.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    (inputs / "s" / "x1.png").unlink()  # removed
    (out / "spreads" / "s" / "x2" / "objects.csv").write_text("")  # emptied
    again = batch(inputs, model_file, out)
    assert again.n_spreads == 2 and again.n_skipped == 0
    assert set(again.objects["spread"]) <= {"x0", "x2"}
    assert (again.objects["spread"] == "x2").sum() == (first.objects["spread"] == "x2").sum()
    assert "x1" not in set(pd.read_csv(out / "objects.csv")["spread"])


def test_a_model_replaced_during_a_batch_is_not_mixed_in(model_file, other_model_file, tmp_path):
    """Issue 29, 4: a model file replaced during a batch mixed two class sets in one table."""
    from napari_chromosome_sort.batch import run_batch

    inputs = tmp_path / "in"
    for i in range(2):
        write_spread(inputs / "s" / f"x{i}.png", i)
    model = tmp_path / "model.safetensors"
    shutil.copy(model_file, model)
    steps = run_batch(inputs, model, tmp_path / "out", "serial", gradcam=False, formats=("png",))
    next(steps)
    next(steps)  # the first spread is done
    shutil.copy(other_model_file, model)  # replaced meanwhile
    result = run_to_end(steps)
    assert result.n_failed == 0
    assert not [c for c in result.objects.columns if c in ("p_P", "p_Q")]
    assert set(result.objects["class"].dropna()) <= set(CLASSES)
    shas = {json.loads(d.read_text())["model_sha256"] for d in (tmp_path / "out").rglob("DONE")}
    assert len(shas) == 1 and None not in shas


def test_second_segment_keeps_no_stale_crops(tmp_path, capsys):
    """Issue 29, 4: a second ``segment`` into the same ``--out`` kept the first run's crops
    beside the new objects."""
    image = write_spread(tmp_path / "s.png", 0, n=8)
    out = tmp_path / "out"
    assert cli(capsys, "segment", image, "--out", out, "--quiet")[0] == 0
    first = sorted((out / "s" / "crops").glob("*.png"))
    write_spread(image, 5, n=2)
    assert cli(capsys, "segment", image, "--out", out, "--quiet")[0] == 0
    crops = {p.name for p in (out / "s" / "crops").glob("*.png")}
    labels = set(pd.read_csv(out / "s" / "objects.csv")["label"])
    assert len(first) > len(crops)
    assert crops <= {f"s_{label}.png" for label in labels}


# ------------------------------------------------------------------ 5. half-written files


def _full_disk_after(monkeypatch, module, name: str, nbytes: int = 64, arg: int = 0) -> None:
    """``module.name`` writes ``nbytes`` bytes to its file argument (positional ``arg``), then
    the disk is full."""

    def partial(*args, **kwargs):
        with open(args[arg], "wb") as handle:
            handle.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, name, partial)


def test_full_disk_leaves_no_truncated_labels(tmp_path, capsys, monkeypatch):
    """Issue 29, 5: on a full disk ``labels.tif`` was left truncated (read back as empty)."""
    import tifffile

    image = write_spread(tmp_path / "s.png")
    _full_disk_after(monkeypatch, tifffile, "imwrite")
    code, err = cli(capsys, "segment", image, "--out", tmp_path / "out", "--quiet")
    one_line(code, err, "no space left")
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert "labels.tif" not in leftovers and not [n for n in leftovers if ".tmp" in n]


def test_full_disk_leaves_no_truncated_gradcam_tiff(model_file, tmp_path, capsys, monkeypatch):
    """Issue 29, 5: on a full disk ``*_gradcam.tif`` was left truncated."""
    import tifffile

    image = write_spread(tmp_path / "in" / "s.png")
    _full_disk_after(monkeypatch, tifffile, "imwrite")
    cams = tmp_path / "cams"
    code, err = cli(capsys, "predict", model_file, image, "--spreads", "--out",
                    tmp_path / "p.csv", "--gradcam", cams, "--no-tta")  # fmt: skip
    one_line(code, err, "no space left")
    assert not [p.name for p in cams.iterdir() if not p.name.startswith(".chromosort")]


def test_full_disk_during_sort_leaves_no_temp_file(model_file, tmp_path, capsys, monkeypatch):
    """Issue 29, 5: ``sort`` left a temporary file on a full disk."""
    from napari_chromosome_sort import sorter

    write_png(tmp_path / "in" / "k.png")
    _full_disk_after(monkeypatch, sorter.shutil, "copy2", arg=1)
    code, err = cli(capsys, "sort", model_file, tmp_path / "in", "--out", tmp_path / "out",
                    "--no-tta")  # fmt: skip
    one_line(code, err, "no space left")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_full_disk_at_fsync_leaves_no_final_name(tmp_path, monkeypatch):
    """Every atomic write syncs before the rename: a disk that fills at the sync leaves neither
    the final name nor the temporary file."""
    from napari_chromosome_sort.files import atomic

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    table = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(OSError):
        atomic.write_csv_atomic(table, tmp_path / "t.csv")
    with pytest.raises(OSError), atomic.atomic_path(tmp_path / "l.npy") as tmp:
        np.save(tmp, np.zeros(3))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 6. values and one-line errors


def test_head_with_zero_scales_is_refused(model_file, tmp_path, capsys):
    """Issue 29, 6: a model whose ``head.sigma`` is all zero called every crop one class."""
    from safetensors.torch import load_file

    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        PooledHead,
    )

    backbone = build_backbone("squeezenet1_1", "random")
    model = ChromosomeClassifier(backbone, PooledHead(backbone.feature_dim, 3), CLASSES,
                                 Preprocessing(size=32), "pooled")  # fmt: skip
    good = save_model(model, tmp_path / "pooled.safetensors")
    tensors = load_file(str(good))
    tensors["head.sigma"] = torch.zeros_like(tensors["head.sigma"])
    bad = craft(good, tmp_path / "bad.safetensors", tensors=tensors)
    image = write_png(tmp_path / "c.png")
    code, err = cli(capsys, "predict", bad, image, "--out", tmp_path / "p.csv")
    one_line(code, err, "distribution")
    assert not (tmp_path / "p.csv").exists()


BAD_TRAINING = {
    "config not an object": ({"config": "x"}, "training config"),
    "class_balance text": ({"config": {"class_balance": "maybe"}}, "class_balance"),
    "counts text": ({"counts": {"A": "lots"}}, "training count"),
    "counts huge": ({"counts": {"A": 10**400}}, "number"),
    "calibration short": (
        {"chosen": {"calibration": {"temperature": 1.0, "bias": [0], "priors": [1, 0, 0]}}},
        "calibration bias",
    ),
    "calibration no priors": (
        {"chosen": {"calibration": {"temperature": 1, "bias": [0] * 3, "priors": [0] * 3}}},
        "priors",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAINING))
def test_crafted_training_record_gives_one_line(case, model_file, tmp_path, capsys):
    """Issue 29, 6: crafted ``training.config``, ``counts`` or ``calibration`` passed the checks
    and failed later (with ``--adapt-priors``/``--calibrate``) with a traceback."""
    training, pattern = BAD_TRAINING[case]
    bad = craft(model_file, tmp_path / "m.safetensors", training=training)
    image = write_png(tmp_path / "c.png")
    code, err = cli(capsys, "predict", bad, image, "--out", tmp_path / "p.csv",
                    "--adapt-priors", "--calibrate", "--no-tta")  # fmt: skip
    one_line(code, err, pattern)


def test_a_number_of_5000_digits_gives_one_line(model_file, tmp_path, capsys):
    """Issue 29, 6: a number of 5000 digits in a model's metadata gave a traceback."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(model_file), "pt") as handle:
        text = handle.metadata()[FORMAT_KEY]
    text = text[:-1] + ', "metrics": {"n": ' + "9" * 5000 + "}}"
    bad = tmp_path / "m.safetensors"
    save_file(load_file(str(model_file)), str(bad), metadata={FORMAT_KEY: text})
    code, err = cli(capsys, "predict", bad, write_png(tmp_path / "c.png"), "--out",
                    tmp_path / "p.csv")  # fmt: skip
    one_line(code, err, "number")


@pytest.mark.parametrize("kind", ["nested", "digits"])
def test_deeply_nested_segmentation_model_gives_one_line(kind, tmp_path, capsys):
    """Issue 29, 6: deeply nested JSON, or a number of 5000 digits, given to ``segment --model``
    gave a traceback."""
    model = tmp_path / "seg.json"
    digits = '{"format": "chromosort-segmentation/1", "n": ' + "8" * 5000 + "}"
    model.write_text("[" * 200_000 + "]" * 200_000 if kind == "nested" else digits)
    code, err = cli(capsys, "segment", write_spread(tmp_path / "s.png"), "--out",
                    tmp_path / "out", "--model", model)  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err


def test_deeply_nested_work_index_gives_one_line(tmp_path):
    """Issue 29, 6: a deeply nested or huge-number ``work.json`` gave a traceback."""
    from napari_chromosome_sort.files.work import INDEX, read_work

    folder = tmp_path / "w.chromosort"
    folder.mkdir()
    for text in ("[" * 100_000 + "]" * 100_000, '{"format": 1e400}', '{"n": ' + "1" * 5000 + "}"):
        (folder / INDEX).write_text(text)
        with pytest.raises(ChromosortError):
            read_work(folder)


@pytest.mark.parametrize(
    "name", ["a\x85b", "a\u202eb", "a\u2066b", "\x9bx"], ids=["nel", "rlo", "lri", "csi"]
)
def test_class_names_with_c1_or_bidi_characters_are_refused(name, model_file, tmp_path, capsys):
    """Issue 29, 6: class names with C1 control characters or U+202E passed."""
    bad = craft(model_file, tmp_path / "m.safetensors", classes=["A", "B", name])
    code, err = cli(capsys, "predict", bad, write_png(tmp_path / "c.png"), "--out",
                    tmp_path / "p.csv")  # fmt: skip
    one_line(code, err, "characters")


def test_class_names_sharing_one_folder_are_refused(model_file, tmp_path, capsys):
    """Issue 29, 6: ``a/b``, ``a_b`` and ``a?b`` merged into one class silently."""
    from napari_chromosome_sort.files.dataset import CropDataset

    bad = craft(model_file, tmp_path / "m.safetensors", classes=["a_b", "a?b", "c"])
    code, err = cli(capsys, "predict", bad, write_png(tmp_path / "c.png"), "--out",
                    tmp_path / "p.csv")  # fmt: skip
    one_line(code, err, "share one folder")
    with pytest.raises(ChromosortError, match="share"):
        CropDataset(tmp_path / "ds", classes=("a/b", "a_b", "a?b"))


def test_csv_cells_a_spreadsheet_would_run_are_quoted(model_file, tmp_path, capsys):
    """Issue 29, 6: CSV cells starting with ``=``, ``+``, ``@`` were written verbatim."""
    from napari_chromosome_sort.files.atomic import write_csv_atomic

    table = pd.DataFrame({"t": ["=1+1", "+cmd", "@SUM(A1)", "-x", "-2.5", "ok"], "n": range(6)})
    write_csv_atomic(table, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", dtype=str)
    assert list(back["t"]) == ["'=1+1", "'+cmd", "'@SUM(A1)", "'-x", "-2.5", "ok"]
    bad = craft(model_file, tmp_path / "m.safetensors", classes=["=HYPERLINK(1)", "B", "C"])
    image = write_png(tmp_path / "in" / "c.png")
    assert cli(capsys, "predict", bad, image, "--out", tmp_path / "p.csv", "--no-tta")[0] == 0
    cells = pd.read_csv(tmp_path / "p.csv", dtype=str)["class"]
    assert not cells.str.startswith(("=", "+", "@")).any()


def test_a_huge_work_layer_is_refused_before_decoding(tmp_path, monkeypatch):
    """Issue 29, 6: a work folder's huge layer was decoded before any size check."""
    import tifffile

    from napari_chromosome_sort.files.work import FORMAT, INDEX, read_work

    folder = tmp_path / "w.chromosort"
    folder.mkdir()
    tifffile.imwrite(folder / "image.tif", shape=(12_000, 12_000), dtype=np.uint8)  # sparse
    index = {"format": FORMAT, "layers": [{"kind": "image", "file": "image.tif", "name": "x"}]}
    (folder / INDEX).write_text(json.dumps(index))

    def decoded(*args, **kwargs):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(tifffile, "imread", decoded)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", decoded)
    with pytest.raises(ChromosortError, match="million pixels"):
        read_work(folder)


def test_train_never_replaces_a_users_file(tmp_path, capsys):
    """``train --out`` onto a file the tool did not write stops before any work."""
    from napari_chromosome_sort.synthetic import make_crop_dataset

    data = make_crop_dataset(tmp_path / "ds", n_per_class=2, size=32)
    user = tmp_path / "notes.safetensors"
    user.write_text("not a model\n")
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "train", data, "--out", user, "--weights", "random", "--quiet")
    one_line(code, err, "not written by chromosort")
    assert changed(before, tree_hash(tmp_path)) == []


@pytest.mark.slow
def test_ctrl_c_on_a_dask_batch_prints_no_traceback(model_file, tmp_path):
    """Issue 29, 6: Ctrl-C on a Dask batch printed 66 lines with a worker's traceback."""
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("distributed")
    for i in range(4):
        write_spread(tmp_path / "in" / "s" / f"x{i}.png", i)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "napari_chromosome_sort.cli", "batch", tmp_path / "in",
            "--model", model_file, "--out", out, "--workers", "1", "--no-gradcam"]  # fmt: skip
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([str(a) for a in args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("spreads/s/.x*")):
        time.sleep(0.1)  # a worker is computing a spread
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "chromosort batch: interrupted"


@pytest.mark.parametrize("kind", ["nested", "digits"])
def test_hostile_coco_file_gives_one_line(kind, tmp_path, capsys):
    """Issue 29, 6: a deeply nested COCO file, or one with a number of 5000 digits, gave a
    traceback."""
    coco = tmp_path / "truth.json"
    text = "[" * 200_000 + "]" * 200_000 if kind == "nested" else '{"images": ' + "7" * 5000 + "}"
    coco.write_text(text)
    image = write_spread(tmp_path / "s.png")
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "segment-learn", image, "--truth", coco, "--out",
                    tmp_path / "seg.json", "--quiet")  # fmt: skip
    one_line(code, err, "error")
    assert changed(before, tree_hash(tmp_path)) == []


# ------------------------------------------------------------------ readout


def _calls_csv(path: Path) -> Path:
    rows = [
        {"sample": s, "spread": f"{s}{k}", "class": c}
        for s in ("wt", "mut")
        for k in range(2)
        for c in "AABBC"
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_readout_of_a_header_only_table_is_one_line(tmp_path, capsys):
    (tmp_path / "calls.csv").write_text("sample,spread,class\n")
    code, err = cli(capsys, "readout", str(tmp_path / "calls.csv"), "--out", str(tmp_path / "o"))
    one_line(code, err, "has no calls")
    assert not (tmp_path / "o").exists()


def test_readout_without_the_sample_column_names_it(tmp_path, capsys):
    (tmp_path / "calls.csv").write_text("a,class\n1,A\n")
    code, err = cli(capsys, "readout", str(tmp_path / "calls.csv"), "--out", str(tmp_path / "o"))
    one_line(code, err, "no column 'sample'")


def test_readout_never_replaces_a_users_file(tmp_path, capsys):
    calls = _calls_csv(tmp_path / "calls.csv")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my own summary\n")
    before = tree_hash(tmp_path)
    code, err = cli(capsys, "readout", str(calls), "--out", str(out))
    one_line(code, err, "not written by chromosort")
    assert changed(before, tree_hash(tmp_path)) == []
    (out / "summary.csv").unlink()
    assert cli(capsys, "readout", str(calls), "--out", str(out))[0] == 0
    assert cli(capsys, "readout", str(calls), "--out", str(out))[0] == 0  # its own files again


def test_readout_metrics_json_too_deep_is_one_line(tmp_path, capsys):
    calls = _calls_csv(tmp_path / "calls.csv")
    (tmp_path / "m.json").write_text("[" * 5000 + "]" * 5000)
    code, err = cli(
        capsys,
        "readout",
        str(calls),
        "--out",
        str(tmp_path / "o"),
        "--metrics",
        str(tmp_path / "m.json"),
    )
    one_line(code, err, "")
