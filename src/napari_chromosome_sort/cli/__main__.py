"""``python -m napari_chromosome_sort.cli`` runs the ``chromosort`` console script."""

import sys

from . import main

sys.exit(main())
