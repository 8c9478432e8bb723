"""Sample data: a synthetic Giemsa-like metaphase spread (generated locally, no download)."""

from __future__ import annotations


def make_sample_spread():
    """napari sample: a synthetic spread plus its ground-truth objects."""
    from .synthetic import make_spread

    spread = make_spread(seed=0)
    layers = [(spread.image, {"name": "synthetic spread"}, "image")]
    truth = getattr(spread, "truth_labels", None)
    if truth is not None:
        meta = {"name": "synthetic truth", "visible": False, "opacity": 0.4}
        table = getattr(spread, "truth", None)
        if table is not None and "label" in table:
            features = table.copy()
            features["index"] = features["label"].astype(int)
            meta["features"] = features
        layers.append((truth, meta, "labels"))
    return layers
