"""The private napari attributes the plugin reads, where napari offers no public way, pinned here:
a napari release that changes their meaning fails this test, not a user's session.

- ``Labels._undo_history`` / ``Labels._redo_history`` (read by ``_widgets/shared/objects.py`` to
  follow napari's own paint/fill undo next to the plugin's status and class edits);
- ``Labels._reset_history()`` (called there when Segment spread gives a layer a new label image:
  setting ``data`` keeps the paint history, whose undo would paint old strokes on the new image);
- the format of a layer's status-bar hint, ``use <key> for what, …`` (public ``layer.help``, but
  its text is edited by ``_widgets/shared/objects.help_with_keys`` to drop the keys the plugin
  binds).

Everything else the widgets use of napari is public: docks are placed with Qt's own API on the
window that holds them (``QWidget.window()``), layers are chosen with magicgui combo boxes."""

import re

import numpy as np


def test_labels_undo_histories_count_paint_steps(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((20, 20), dtype=np.int32))
    assert (len(layer._undo_history), len(layer._redo_history)) == (0, 0)
    layer.paint((10, 10), 3)
    assert len(layer._undo_history) == 1 and len(layer._redo_history) == 0
    layer.undo()
    assert len(layer._undo_history) == 0 and len(layer._redo_history) == 1
    assert not layer.data.any()


def test_new_data_keeps_the_paint_history_until_it_is_reset(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((20, 20), dtype=np.int32))
    layer.paint((10, 10), 3)
    layer.data = np.zeros((20, 20), dtype=np.int32)
    assert len(layer._undo_history) == 1  # still there: an undo would paint on the new image
    layer._reset_history()
    assert (len(layer._undo_history), len(layer._redo_history)) == (0, 0)
    layer.undo()
    assert not layer.data.any()


def test_labels_hint_lists_keys_as_use_key_for(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((20, 20), dtype=np.int32))
    layer.mode = "paint"
    entries = [e.strip() for e in layer.help.split(",") if e.strip()]
    assert entries and all(re.match(r"use <[^>]+> for ", e) for e in entries), layer.help
