"""What several ``chromosort`` commands share: the ``--overwrite`` switch of a command that
writes files, and reading the spreads of a run one at a time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace ``what`` (e.g. ``"files in --out"``) even where chromosort did
    not write it; without it a command refuses (:func:`.files.safety.output_path`)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} that chromosort did not write (default: refuse)",
    )


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
        from tqdm import tqdm

        tqdm.write(f"{path.name}: skipped: {error}", file=sys.stderr)  # clear of a progress bar
        return None
    return image
