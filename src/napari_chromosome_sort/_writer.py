"""Writers: a Labels layer's per-object table (status, class, p_<class>...) as a CSV file, and
the work on a spread (image, reviewed objects, predicted classes) as a ``.chromosort`` folder."""

from __future__ import annotations

import pandas as pd

from napari_chromosome_sort.files.atomic import write_csv_atomic
from napari_chromosome_sort.files.work import save_work


def write_features_csv(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer for Labels: one row per object from ``layer.features``."""
    features = attributes.get("features")
    if features is None or len(features) == 0:
        features = pd.DataFrame(attributes.get("properties") or {})
    table = pd.DataFrame(features).drop(columns=["index"], errors="ignore")
    if not str(path).lower().endswith(".csv"):
        path = f"{path}.csv"
    write_csv_atomic(table, path)  # a temporary file renamed: never written through a link
    return [str(path)]


def write_work_folder(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 multi-layer writer: the selected image and Labels layers as a work folder that
    File ▸ Open Folder… opens again with statuses, edits and predictions (:mod:`.work`)."""
    return save_work(path, layer_data)
