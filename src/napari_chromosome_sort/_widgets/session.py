"""The :class:`.Session` of each napari viewer: what its dock widgets share (models on offer,
calls-changed signals), one per viewer and gone with it."""

from __future__ import annotations

import weakref

from napari_chromosome_sort.session import Session

# napari has no public place for a plugin's state per viewer: one weak map, viewer -> session
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_of(viewer) -> Session:
    """The session of ``viewer`` (made on first use; forgotten when the viewer is collected)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = Session()
    return session
