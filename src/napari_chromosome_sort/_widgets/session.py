"""The :class:`~napari_chromosome_sort.session.Session` of each napari viewer: one per viewer,
shared by its widgets, gone with the viewer."""

from __future__ import annotations

import weakref

from napari_chromosome_sort.session import Session

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_of(viewer) -> Session:
    """The session of ``viewer`` (made on first use)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = Session()
    return session
