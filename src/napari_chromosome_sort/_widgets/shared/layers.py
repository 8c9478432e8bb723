"""napari layers <-> the core's tables, and the colours objects and classes are drawn in.

Nothing here implements image analysis; it only moves data between napari layers and the core.
"""

from __future__ import annotations

import colorsys
from collections.abc import Generator, Iterable
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from napari_chromosome_sort.display.colours import class_colours
from napari_chromosome_sort.segmentation import KEPT, reconcile_objects
from napari_chromosome_sort.segmentation.edits import USER_REASON, neighbour_shades

#: the key of the plugin's own entries in a layer's metadata
META_KEY = "chromosort"
STATUS_COLOURS = {
    "chromosome": "#33dd55",
    "nucleus": "#3388ff",
    "cluster": "#ff9922",
    "crossing-resolved": "#22cccc",
    "debris": "#999999",
    "border": "#cc44cc",
    "rejected": "#ff3333",
}
#: (hue shift, brightness factor) of an edited object's status colour, per shade
EDIT_SHADES = ((0.09, 1.0), (-0.08, 1.0), (0.0, 0.55))


# ----------------------------------------------------------------------------- colours
def hex_to_rgba(colour: str, alpha: float = 1.0) -> np.ndarray:
    """RGBA floats in [0, 1] of a ``#rrggbb`` colour."""
    colour = colour.lstrip("#")
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    return np.array([*rgb, alpha], dtype=np.float32)


def colormap_from_mapping(
    label_to_key: dict[int, str], key_colours: dict[str, str], default: str | None = None
) -> DirectLabelColormap:
    """A DirectLabelColormap colouring each label by the colour of its key (status or class)."""
    colours: dict[int | None, Any] = {None: np.zeros(4, np.float32), 0: np.zeros(4, np.float32)}
    if default is not None:
        colours[None] = hex_to_rgba(default, 0.6)
    for label, key in label_to_key.items():
        if key in key_colours:
            colours[int(label)] = hex_to_rgba(key_colours[key])
    return DirectLabelColormap(color_dict=colours)


def status_colormap(features: pd.DataFrame) -> DirectLabelColormap:
    """Colours of an objects layer by status (kept objects where a status is missing)."""
    if features is None or len(features) == 0 or "status" not in features:
        return colormap_from_mapping({}, {}, default=STATUS_COLOURS[KEPT])
    mapping = dict(zip(features["label"].astype(int), features["status"].astype(str), strict=True))
    return colormap_from_mapping(mapping, STATUS_COLOURS, default=STATUS_COLOURS[KEPT])


def review_colormap(labels: np.ndarray, features) -> DirectLabelColormap:
    """Status colours; objects edited by hand in a shifted shade of their status colour,
    touching ones in different shades (the two halves of a split stand apart)."""
    colormap = status_colormap(features)
    if features is None or not len(features) or "reason" not in features:
        return colormap
    edited = features.loc[features["reason"] == USER_REASON, "label"].astype(int).tolist()
    if not edited:
        return colormap
    colours = dict(colormap.color_dict)
    for label, shade in neighbour_shades(labels, edited, len(EDIT_SHADES)).items():
        if label not in colours:
            continue
        rgba = np.array(colours[label], np.float32)
        hue, saturation, value = colorsys.rgb_to_hsv(*rgba[:3])
        shift, brightness = EDIT_SHADES[shade]
        rgba[:3] = colorsys.hsv_to_rgb((hue + shift) % 1.0, saturation, value * brightness)
        colours[label] = rgba
    return DirectLabelColormap(color_dict=colours)


def class_legend(classes: Iterable[str], keys: bool = False) -> str:
    """Rich text: a coloured square and the name of each class (with its number key)."""
    colours = class_colours(classes)
    return "  ".join(
        f'<span style="color:{colour}">■</span> {f"{i + 1}: " if keys else ""}{cls}'
        for i, (cls, colour) in enumerate(colours.items())
    )


# ----------------------------------------------------------------------------- layers
def run_steps(steps: Generator) -> Any:
    """Run a generator of display steps to its end at once; returns its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def layer_image(layer) -> np.ndarray:
    """The pixels of an image layer as a numpy array (first scale of multiscale data)."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return np.asarray(data)


def with_index(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a per-object table ready for ``Labels.features``: napari maps label values to
    feature rows through an 'index' column (the hover status bar)."""
    table = table.copy().reset_index(drop=True)
    table["index"] = table["label"].astype(int) if len(table) else pd.Series(dtype=int)
    return table


def sync_features(layer) -> pd.DataFrame:
    """Make ``layer.features`` match ``layer.data`` after hand edits (see reconcile_objects)."""
    table = with_index(reconcile_objects(np.asarray(layer.data), layer.features))
    layer.features = table
    return table


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def label_at(layer, position) -> int:
    """Label value under a world position (0 if outside or background)."""
    value = layer.get_value(position, world=True)
    if isinstance(value, tuple):  # multiscale
        value = value[1]
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def feature_row(layer, label: int) -> dict | None:
    """The features row of ``label`` in a Labels layer as a dict, or None."""
    features = layer.features
    if not len(features) or "label" not in features:
        return None
    match = features[features["label"].astype(int) == int(label)]
    return None if match.empty else match.iloc[0].to_dict()


def kept_labels(layer) -> list[int]:
    """Labels of the objects kept as ``chromosome`` (every label when there are no statuses)."""
    features = layer.features
    if not len(features) or "status" not in features:
        return sorted(int(v) for v in np.unique(layer.data) if v)
    return sorted(features.loc[features["status"] == KEPT, "label"].astype(int).tolist())


def is_segmentation_layer(layer) -> bool:
    """Is ``layer`` an objects layer made by Segment spread (or Predict)?"""
    return isinstance(layer, Labels) and layer.metadata.get(META_KEY, {}).get("kind") in (
        "segmentation",
        "prediction",
    )
