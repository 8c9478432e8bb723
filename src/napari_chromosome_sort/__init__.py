"""napari-chromosome-sort."""

__version__ = "0.1.0"  # the one version number (pyproject.toml reads it)
