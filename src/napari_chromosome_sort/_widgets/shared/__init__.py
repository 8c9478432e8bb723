"""What the dock widgets share, one job per module.

- :mod:`.workers`: background jobs (napari thread workers) and errors shown to the user;
- :mod:`.forms`: magicgui forms built from the core's dataclasses, combo boxes of the viewer's
  layers;
- :mod:`.layers`: napari layers <-> the core's tables, and the colours of objects and classes;
- :mod:`.objects`: the review state one objects layer shares between widgets (undo, keys,
  the selected object);
- :mod:`.docks`: how a widget sits in napari's dock area (scroll area, tables sized to their
  rows, pictures).
"""
