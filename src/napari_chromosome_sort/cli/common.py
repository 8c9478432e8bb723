"""What several ``chromosort`` commands share: reading the spreads of a run one at a time."""

from __future__ import annotations

import sys
from pathlib import Path


def read_spread(path: Path):
    """The spread image at ``path``, or None after a line on stderr saying why it is skipped
    (every pixel has one value: nothing to segment). An unreadable file stops the command."""
    # imported when a command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.errors import ChromosortError
    from napari_chromosome_sort.files.io import read_image, require_contrast

    image = read_image(path)
    try:
        require_contrast(image, f"image {path.name}")
    except ChromosortError as error:
        print(f"{path.name}: skipped: {error}", file=sys.stderr)
        return None
    return image
