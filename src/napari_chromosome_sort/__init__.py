"""napari-chromosome-sort."""

__version__ = "0.1.0"
