"""Full garbage collections kept off the window: objects set aside, and a closed layer freed."""

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
