"""Keep Python's full garbage collections off the window.

A full collection walks every object the collector tracks; with napari, torch and scikit-learn
loaded those are hundreds of thousands, and one collection holds the interpreter for 0.3-1 s on
whichever thread allocates at that moment, often the GUI thread while it adds a layer. The
objects alive once the heavy libraries are imported (modules, classes, the open layers) are set
aside (:func:`gc.freeze`), so later collections walk only what was made since. When a layer is
closed everything is brought back at once (what was closed can be freed again) and, at the next
turn of the event loop, one collection frees it and the survivors are set aside again.
"""

from __future__ import annotations

import gc
import weakref

from qtpy.QtCore import QTimer

_watched: weakref.WeakSet = weakref.WeakSet()  # the viewers whose layer removals are watched
_release_due = [False]


def set_aside(viewer) -> None:
    """Collect once, then set every object alive now aside from later collections, until a
    layer of ``viewer`` is closed."""
    gc.collect()
    gc.freeze()
    if viewer not in _watched:
        _watched.add(viewer)
        viewer.layers.events.removed.connect(_on_layer_removed)


def _on_layer_removed(*_) -> None:
    """A layer was closed: bring everything back under collection now (so the closed layer and,
    with the viewer closing, the viewer can be freed), set the survivors aside again later."""
    gc.unfreeze()
    if not _release_due[0]:
        _release_due[0] = True
        QTimer.singleShot(0, _set_survivors_aside)


def _set_survivors_aside() -> None:
    _release_due[0] = False
    gc.collect()
    gc.freeze()
