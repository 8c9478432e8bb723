"""Canonical appearance of chromosome crops (placeholder owned by the crops/appearance engineer).

``canonical_appearance(rgb)`` maps published enhanced crops and raw spread crops to one look.
The classifier's preprocessing calls it on every image it sees (train and predict).
This minimal version is the identity; the appearance owner replaces it.
"""

from __future__ import annotations

import numpy as np


def canonical_appearance(rgb: np.ndarray) -> np.ndarray:
    """Return ``rgb`` (uint8 HxWx3) in the canonical network-ready look (identity for now)."""
    return rgb
