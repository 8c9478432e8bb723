"""Sample data: a real Giemsa spread shipped with the package, and a synthetic spread."""

from __future__ import annotations

from importlib.resources import files

from napari_chromosome_sort.files.io import read_image
from napari_chromosome_sort.synthetic import make_spread

GIEMSA_SAMPLE = "giemsa_ddx11_spread_3.png"  # source, licence: giemsa_ddx11_spread_3.LICENSE.txt
GIEMSA_SAMPLE_BOXES = "giemsa_ddx11_spread_3.txt"  # the annotator's A/B/C boxes (YOLO), same
WT_MODEL = "wt_squeezenet1_1.safetensors"  # trained on WT crops; wt_squeezenet1_1.LICENSE.txt


def sample_path(name: str = GIEMSA_SAMPLE):
    """Path of a file shipped in the package's ``data`` folder."""
    return files("napari_chromosome_sort") / "data" / name


def make_giemsa_spread():
    """napari sample: a real Giemsa-stained DDX11-/- metaphase spread (MIT, see its licence)."""
    image = read_image(sample_path())
    meta = {"name": "Giemsa spread (DDX11-/-)", "metadata": {"source": sample_path().name}}
    return [(image, meta, "image")]


def make_sample_spread():
    """napari sample: a synthetic spread plus its ground-truth objects."""
    spread = make_spread(seed=0)
    layers = [(spread.image, {"name": "synthetic spread"}, "image")]
    truth = getattr(spread, "truth_labels", None)
    if truth is not None:
        meta = {"name": "synthetic truth", "visible": False, "opacity": 0.4}
        table = getattr(spread, "truth", None)
        if table is not None and "label" in table:
            features = table.copy()
            features["index"] = features["label"].astype(int)
            meta["features"] = features
        layers.append((truth, meta, "labels"))
    return layers


def bundled_model_path():
    """The bundled wild-type model (classes A, B, C; see its licence beside it)."""
    return sample_path(WT_MODEL)
