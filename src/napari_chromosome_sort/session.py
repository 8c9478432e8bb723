"""What the widgets of one viewer share, without Qt: the models on offer, and signals when the
calls of a spread change.

A :class:`Session` is evented (psygnal): a widget connects to its signals instead of asking
another widget. The Train widget adds the model it made (:meth:`Session.add_model`) and the
Predict widget offers it at once; Predict and the correction loop announce new calls
(:attr:`Session.calls_changed`) and the Readout widget reads them again. The widgets of one
napari viewer share one session (``_widgets.session.session_of(viewer)``); tests make their own.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal

TRAINED_HERE = "trained here"
IMPORTED = "imported"


@dataclass(frozen=True)
class OfferedModel:
    """A model file offered to Predict, and where it came from (trained here, imported)."""

    path: str
    kind: str = TRAINED_HERE

    @property
    def title(self) -> str:
        """How the model is offered: ``"trained here: wt.safetensors"``."""
        return f"{self.kind}: {Path(self.path).name}"


class Session:
    """The models on offer and the calls of open spreads, shared by one viewer's widgets.

    Signals
    -------
    model_added(OfferedModel)
        A model file was trained or imported while the viewer was open.
    calls_changed(str)
        The calls of a spread changed (predicted, corrected or retrained); the argument is the
        name of the layer holding them.
    """

    model_added = Signal(OfferedModel)
    calls_changed = Signal(str)

    def __init__(self) -> None:
        self._models: dict[str, OfferedModel] = {}
        #: what the widgets keep per layer (the review of an objects layer), gone with the layer
        self.layer_state: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def models(self) -> list[OfferedModel]:
        """The models on offer, oldest first (one entry per file)."""
        return list(self._models.values())

    def add_model(self, path: str | Path, kind: str = TRAINED_HERE) -> OfferedModel:
        """Offer the model file ``path`` (moved last if already offered) and emit
        :attr:`model_added`."""
        offered = OfferedModel(str(path), kind)
        self._models.pop(offered.path, None)
        self._models[offered.path] = offered
        self.model_added.emit(offered)
        return offered

    def title(self, path: str | Path) -> str:
        """How the model at ``path`` is offered (``"trained here: NAME"`` if not known)."""
        offered = self._models.get(str(path), OfferedModel(str(path)))
        return offered.title
