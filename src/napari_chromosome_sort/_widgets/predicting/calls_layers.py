"""The layers of a spread's calls: the predicted classes (outlined in their class colours), the
Grad-CAM map and the class names beside the objects.

:func:`calls_data` computes every array the layers show (the kept objects' labels, the masked
map, the table) and runs on a worker; :func:`show_calls` only hands them to napari, on the GUI
thread, so painting a spread never stalls the window.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from napari.layers import Labels, Points

from napari_chromosome_sort._widgets.predicting.gradcam_layer import show_gradcam_steps
from napari_chromosome_sort._widgets.shared.layers import (
    colormap_from_mapping,
    run_steps,
    with_index,
)
from napari_chromosome_sort.display.cam_display import masked_to_objects
from napari_chromosome_sort.display.colours import class_colours

OUTLINE = 2  # class outline thickness (screen pixels) while the Grad-CAM map is shown
CALLS_SUFFIX = " predicted classes"
NAMES_SUFFIX = " class names"
TEXT = {"string": "{class}", "color": "white", "size": 9, "anchor": "upper_left"}


@dataclass
class CallsData:
    """What the layers of one spread's calls show, computed off the GUI thread."""

    image_name: str
    classes: list[str]
    kept: np.ndarray  # int32 labels of the classified objects only
    features: pd.DataFrame  # one row per classified object, ready for ``Labels.features``
    cam: np.ndarray | None = None  # Grad-CAM on the kept objects' pixels only
    polarity: str = "dark_on_light"
    denoised: bool = False

    @property
    def name(self) -> str:
        """The name of the predicted-classes layer."""
        return f"{self.image_name}{CALLS_SUFFIX}"


def calls_table(table: pd.DataFrame, objects: pd.DataFrame) -> pd.DataFrame:
    """The calls ``table`` with each object's centroid (for hover and review)."""
    if "centroid_y" not in table and "centroid_y" in objects:
        table = table.merge(objects[["label", "centroid_y", "centroid_x"]], on="label", how="left")
    return table


def calls_data(
    image_name: str,
    classes,
    table: pd.DataFrame,
    labels: np.ndarray,
    heat: np.ndarray | None = None,
    polarity: str = "dark_on_light",
    denoised: bool = False,
) -> CallsData:
    """The layers' data of the calls ``table`` on the objects ``labels`` (and the Grad-CAM
    ``heat``, masked here to the classified objects)."""
    labels = np.asarray(labels)
    kept = np.where(np.isin(labels, table["label"].to_numpy()), labels, 0).astype(np.int32)
    cam = None if heat is None else masked_to_objects(heat, kept)
    return CallsData(
        image_name, list(classes), kept, with_index(table), cam, polarity, bool(denoised)
    )


def prediction_data(image_name: str, classes, prediction) -> CallsData:
    """:func:`calls_data` of a :class:`.SpreadPrediction`."""
    segmentation = prediction.segmentation
    return calls_data(
        image_name,
        classes,
        calls_table(prediction.table.copy(), segmentation.objects),
        segmentation.labels,
        prediction.gradcam_map,
        segmentation.polarity,
        bool(segmentation.stats.get("denoised")),
    )


def show_calls(viewer, image_layer, data: CallsData) -> tuple[object, bool]:
    """:func:`show_calls_steps` at once; returns ``(classes layer, made)``."""
    return run_steps(show_calls_steps(viewer, image_layer, data))


def show_calls_steps(viewer, image_layer, data: CallsData) -> Generator[None, None, tuple]:
    """Show (or update) the calls layers of ``image_layer`` in short steps (a caller may let
    the window draw and answer between steps: each new layer is built in one step and added to
    the viewer in the next; the classes layer is added hidden and its outlines drawn in a third
    step); returns ``(classes layer, made)`` with ``made`` True when the classes layer is new.
    The classes layer comes last, so that napari makes it the active layer as it adds it (its
    keys: the toggle, the corrections)."""
    placement = {"scale": image_layer.scale[-2:], "translate": image_layer.translate[-2:]}
    colours = class_colours(data.classes)
    if data.cam is not None:
        yield from show_gradcam_steps(viewer, image_layer, data.cam, placement)
        yield
    yield from show_names_steps(viewer, image_layer.name, data.features, colours, placement)
    yield
    colormap = _colormap(data.features, colours)
    made = data.name not in viewer.layers
    if not made:
        layer = viewer.layers[data.name]
        layer.data = data.kept
        layer.features = data.features
        layer.colormap = colormap
        return layer, made
    meta = {
        "kind": "prediction",
        "image_layer": image_layer.name,
        "polarity": data.polarity,
        "denoised": data.denoised,
    }
    layer = Labels(
        data.kept,
        name=data.name,
        features=data.features,
        colormap=colormap,
        opacity=1.0,
        metadata={"chromosort": meta},
        visible=False,  # napari slices a hidden layer only once it is shown: a shorter add
        **placement,
    )
    yield
    viewer.layers.append(layer)
    yield
    layer.contour = OUTLINE  # class outlines: the map and the morphology stay visible
    layer.visible = True
    return layer, made


def _colormap(table: pd.DataFrame, colours: dict):
    mapping = dict(zip(table["label"].astype(int), table["class"].astype(str), strict=True))
    return colormap_from_mapping(mapping, colours)


def repaint_calls(viewer, layer, table: pd.DataFrame, classes) -> None:
    """Colour ``layer``'s objects by the classes of ``table`` and write the class names beside
    them (a correction: only the table changed, so nothing heavy runs)."""
    colours = class_colours(list(classes))
    layer.features = with_index(table.drop(columns=["index"], errors="ignore"))
    layer.colormap = _colormap(table, colours)
    image_name = layer.metadata.get("chromosort", {}).get("image_layer", layer.name)
    placement = {"scale": layer.scale, "translate": layer.translate}
    show_names(viewer, image_name, table, colours, placement)


def show_names(viewer, image_name: str, table: pd.DataFrame, colours: dict, placement) -> None:
    """:func:`show_names_steps` at once."""
    run_steps(show_names_steps(viewer, image_name, table, colours, placement))


def show_names_steps(
    viewer, image_name: str, table: pd.DataFrame, colours: dict, placement
) -> Generator:
    """The class names beside each object (its box's top right corner), not on it; a new
    layer is built in one step, added hidden in the next and shown in a third."""
    name = f"{image_name}{NAMES_SUFFIX}"
    corner = ["bbox_y0", "bbox_x1"] if "bbox_x1" in table else ["centroid_y", "centroid_x"]
    coords = table[corner].to_numpy(float) if len(table) else np.zeros((0, 2))
    features = pd.DataFrame({"class": table["class"].astype(str).to_numpy()})
    face = [colours.get(c, "#ffffff") for c in features["class"]] or "white"
    if name in viewer.layers:
        points = viewer.layers[name]
        points.data = coords
        points.features = features
        points.face_color = face
        points.text = TEXT
        return
    points = Points(
        coords,
        name=name,
        features=features,
        text=TEXT,
        size=5,
        face_color=face,
        border_width=0,
        visible=False,  # napari slices a hidden layer only once it is shown: a shorter add
        **placement,
    )
    yield
    viewer.layers.append(points)
    yield
    points.visible = True
