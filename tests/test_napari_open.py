"""Opening files through napari's own path: which reader napari offers, and every shared image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

PLUGIN = "napari-chromosome-sort"


def _readers(path: Path) -> dict[str, str]:
    from napari.plugins._npe2 import get_readers

    return get_readers(path)


def _dataset(folder: Path) -> Path:
    (folder / "a").mkdir(parents=True)
    Image.fromarray(np.full((12, 10), 90, np.uint8)).save(folder / "a" / "c1.png")
    pd.DataFrame({"file": ["a/c1.png"], "label": ["a"]}).to_csv(folder / "manifest.csv")
    return folder


def test_reader_not_offered_for_images(make_napari_viewer, tmp_path):
    """File > Open of an image goes to napari's reader, never to this plugin's dataset reader."""
    viewer = make_napari_viewer()
    png, tif = tmp_path / "x.png", tmp_path / "x.tif"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png)
    tifffile.imwrite(tif, np.arange(64, dtype=np.uint16).reshape(8, 8))
    for path in (png, tif, tmp_path / "table.csv"):
        assert PLUGIN not in _readers(path), path.name
    viewer.open(png)
    viewer.open(tif)
    assert [layer.name for layer in viewer.layers] == ["x", "x [1]"]


def test_reader_offered_for_a_dataset(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    folder = _dataset(tmp_path / "crops")
    assert PLUGIN in _readers(folder / "manifest.csv")
    assert PLUGIN in _readers(folder)
    viewer.open(folder, plugin=PLUGIN)
    layer = viewer.layers["crops crops"]
    assert layer.data.shape[0] == 1 and "manifest" in layer.metadata


def _dapi_sample(dapi_dir: Path) -> list[Path]:
    """One DAPI image (``*D.tif``) per slide folder: all are LZW-compressed TIFFs."""
    return [
        sorted(folder.glob("*D.tif"))[0]
        for folder in sorted(dapi_dir.iterdir())
        if folder.is_dir() and any(folder.glob("*D.tif"))
    ]


def test_every_shared_spread_opens_in_napari(make_napari_viewer, giemsa_dir, dapi_dir):
    """What a user opens with File > Open: napari's own reader, no plugin chosen by hand."""
    import tifffile

    viewer = make_napari_viewer()
    dapi = _dapi_sample(dapi_dir)
    compressions = set()
    for path in dapi:
        with tifffile.TiffFile(path) as tif:
            compressions.add(tif.pages[0].compression.name)
    if "LZW" not in compressions:
        pytest.skip("no LZW-compressed DAPI TIFF in the shared data")
    paths = sorted((giemsa_dir / "images").glob("*.png")) + dapi
    for path in paths:
        layers = viewer.open(path)
        assert len(layers) == 1, path.name
        data = np.asarray(layers[0].data)
        assert data.ndim >= 2 and min(data.shape[:2]) > 100 and data.max() > data.min(), path.name
    assert len(viewer.layers) == len(paths)


def test_real_sample_spread_opens_from_the_menu(make_napari_viewer):
    """File > Open Sample > Chromosome Sort: the real Giemsa spread, with its licence shipped."""
    from napari_chromosome_sort._sample_data import sample_path

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "giemsa_spread")
    viewer.open_sample(PLUGIN, "synthetic_spread")
    layer = viewer.layers["Giemsa spread (DDX11-/-)"]
    assert layer.data.shape[:2] == (1024, 1440) and layer.data.std() > 5
    assert "synthetic spread" in viewer.layers
    licence = sample_path("giemsa_ddx11_spread_3.LICENSE.txt").read_text()
    assert "MIT License" in licence and "Kosuke Oshima" in licence


def _saved_work(viewer, folder: Path) -> list[str]:
    """A spread and its reviewed objects saved from napari as a ``.chromosort`` work folder
    (through the plugin's writer); returns the layer names."""
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((40, 50, 3)), name="spread", rgb=True)
    labels = np.zeros((40, 50), np.int32)
    labels[5:12, 5:9], labels[20:30, 30:34] = 1, 2
    features = pd.DataFrame({"label": [1, 2], "status": ["chromosome", "rejected"]})
    objects = viewer.add_labels(labels, name="spread objects", features=features)
    objects.metadata["chromosort"] = {"kind": "segmentation", "image_layer": "spread"}
    viewer.layers.selection = set(viewer.layers)
    assert viewer.layers.save(str(folder), selected=True, plugin=PLUGIN)
    return [layer.name for layer in viewer.layers]


def test_work_folder_opens_with_the_plugin_and_napari_reader_refuses_it(
    make_napari_viewer, tmp_path
):
    """Issue 31: napari's own reader gave a broken stack and a Dask ValueError on a work folder.
    Now only ``work.json`` lies at the folder's top: napari's reader stops on it with one error
    and adds nothing; the plugin (chosen, or through ``work.json``) opens the layers."""
    folder = tmp_path / "spread1.chromosort"
    names = _saved_work(make_napari_viewer(), folder)
    top = sorted(p.name for p in folder.iterdir() if not p.is_dir())
    assert top == ["work.json"]

    builtin = make_napari_viewer()
    with pytest.raises(Exception) as refused:
        builtin.open(folder, plugin="napari")
    assert not isinstance(refused.value, ValueError), refused.value  # no Dask stacking error
    assert "work.json" in str(refused.value) and len(builtin.layers) == 0

    for path, plugin in ((folder, PLUGIN), (folder / "work.json", None)):
        viewer = make_napari_viewer()
        viewer.open(path, plugin=plugin)
        assert [layer.name for layer in viewer.layers] == names, path
        objects = viewer.layers["spread objects"]
        assert list(objects.features["status"]) == ["chromosome", "rejected"]
        assert objects.metadata["chromosort"]["kind"] == "segmentation"
    assert set(_readers(folder / "work.json")) == {PLUGIN}  # no other reader is offered
