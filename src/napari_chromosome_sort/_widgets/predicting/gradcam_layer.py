"""The Grad-CAM layer of a predicted spread: each chromosome's map in the palette no class
colour shares, and one colour bar in the viewer."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from napari.layers import Image
from napari.utils.colormaps import Colormap

from napari_chromosome_sort.display.cam_display import cam_colormap_rgba

GRADCAM_KIND = "gradcam"


def gradcam_layer_of(viewer, image_layer):
    """The Grad-CAM layer Predict made for ``image_layer``, or None."""
    name = f"{image_layer.name} Grad-CAM" if image_layer is not None else None
    return viewer.layers[name] if name and name in viewer.layers else None


def show_gradcam_steps(viewer, image_layer, data: np.ndarray, placement: dict) -> Generator:
    """Show (or update) the spread's Grad-CAM ``data`` (each chromosome's own map on its pixels,
    masked beforehand: :func:`.cam_display.masked_to_objects`) in the palette no class colour
    shares, with the ONE colour bar of the viewer (the other spreads' maps hide theirs). A new
    layer is built in one step, added hidden in the next and shown in a third (napari's costly
    parts, each in its own turn of the event loop); returns the layer."""
    layer = gradcam_layer_of(viewer, image_layer)
    if layer is not None:
        layer.data = data
    else:
        layer = Image(
            data,
            name=f"{image_layer.name} Grad-CAM",
            colormap=Colormap(cam_colormap_rgba(), name="chromosort Grad-CAM"),
            blending="translucent",
            contrast_limits=(0.0, 1.0),
            interpolation2d="linear",
            metadata={"chromosort": {"kind": GRADCAM_KIND, "image_layer": image_layer.name}},
            visible=False,  # napari slices a hidden layer only once it is shown: a shorter add
            **placement,
        )
        yield
        viewer.layers.append(layer)
        yield
        layer.visible = True
    for other in viewer.layers:
        if other.metadata.get("chromosort", {}).get("kind") == GRADCAM_KIND:
            other.colorbar.visible = other is layer
    return layer
