"""Writer: a Labels layer's per-object table (status, class, p_<class>...) as a CSV file."""

from __future__ import annotations

import pandas as pd


def write_features_csv(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer for Labels: one row per object from ``layer.features``."""
    features = attributes.get("features")
    if features is None or len(features) == 0:
        features = pd.DataFrame(attributes.get("properties") or {})
    table = pd.DataFrame(features).drop(columns=["index"], errors="ignore")
    if not str(path).lower().endswith(".csv"):
        path = f"{path}.csv"
    table.to_csv(path, index=False)
    return [str(path)]
