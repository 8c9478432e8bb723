"""``python -m napari_chromosome_sort.cli`` runs the ``chromosort`` console script."""

import sys

from napari_chromosome_sort.cli import main

sys.exit(main())
