"""Predict keeps the window answering: full collections kept off it (a closed layer still freed),
and a spread shown while another is painted.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np

from napari_chromosome_sort._widgets.shared.collector import set_aside


def test_set_aside_then_a_closed_layer_is_freed(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    kept = viewer.add_image(np.zeros((32, 32), np.float32), name="kept")
    closed = viewer.add_image(np.zeros((64, 64), np.float32), name="closed")
    closed_ref = weakref.ref(closed)
    try:
        set_aside(viewer)
        assert gc.get_freeze_count() > 0  # the open layers are out of later collections
        viewer.layers.remove(closed)
        del closed
        assert gc.get_freeze_count() == 0  # back under collection as soon as a layer closes
        qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=5000)  # set aside again
        assert closed_ref() is None  # the closed layer (cyclic, as napari layers are) was freed
        assert "kept" in viewer.layers and kept.data.shape == (32, 32)
    finally:
        gc.unfreeze()


def test_a_second_spread_shown_while_the_first_paints(make_napari_viewer, qtbot):
    """Showing a spread while another is still being painted finishes the first at once: no
    layer of either is left hidden or without its class outlines."""
    import pandas as pd

    from napari_chromosome_sort._widgets.predict import PredictWidget
    from napari_chromosome_sort._widgets.predicting.calls_layers import OUTLINE, calls_data

    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 5:20], labels[20:35, 30:50] = 1, 2
    table = pd.DataFrame(
        {"label": [1, 2], "class": ["A", "B"], "p_A": [0.9, 0.2], "p_B": [0.1, 0.8]}
        | {"centroid_y": [10.0, 27.0], "centroid_x": [12.0, 40.0]}
    )
    heat = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    for name in ("first", "second"):
        layer = viewer.add_image(np.ones(labels.shape, np.float32), name=name)
        widget.show_data(layer, calls_data(name, ["A", "B"], table, labels, heat))
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    for name in ("first", "second"):
        classes = viewer.layers[f"{name} predicted classes"]
        assert classes.visible and classes.contour == OUTLINE
        assert viewer.layers[f"{name} class names"].visible
        assert viewer.layers[f"{name} Grad-CAM"].visible
    assert widget.layer is viewer.layers["second predicted classes"]
