"""Keep an objects table in step with its label image after hand edits in the viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd

USER_REASON = "edited by user"


def measure_labels(labels: np.ndarray) -> pd.DataFrame:
    """Area, bbox (y1/x1 exclusive) and centroid of every label, in full-image pixels."""
    from skimage.measure import regionprops_table

    # (an empty label image gives the same columns, empty)
    table = pd.DataFrame(
        regionprops_table(np.asarray(labels), properties=("label", "area", "bbox", "centroid"))
    )
    return table.rename(
        columns={
            "bbox-0": "bbox_y0",
            "bbox-1": "bbox_x0",
            "bbox-2": "bbox_y1",
            "bbox-3": "bbox_x1",
            "centroid-0": "centroid_y",
            "centroid-1": "centroid_x",
        }
    )


def reconcile_objects(labels: np.ndarray, objects: pd.DataFrame) -> pd.DataFrame:
    """Make an objects table match its label image after hand edits (merge, split, paint, erase).

    Rows of deleted labels are dropped; new labels become kept chromosomes with reason
    "edited by user"; area/bbox/centroid are re-measured for every label whose pixels changed.
    The status a user set is kept.
    """
    labels = np.asarray(labels)
    measured = measure_labels(labels)
    old = objects.copy() if len(objects) else pd.DataFrame({"label": []})
    if "label" not in old:
        old["label"] = np.arange(1, len(old) + 1)
    old["label"] = old["label"].astype(int)
    old = old.drop_duplicates("label").set_index("label")
    measured = measured.set_index("label")
    rows = []
    for label, meas in measured.iterrows():
        if label in old.index:
            row = old.loc[label].to_dict()
            changed = "area" in row and not np.isclose(float(row.get("area", -1)), meas["area"])
            if changed and row.get("reason") != USER_REASON:
                row["reason"] = USER_REASON
        else:
            row = {"status": "chromosome", "reason": USER_REASON}
        row.update(meas.to_dict())
        row["label"] = int(label)
        rows.append(row)
    columns = ["label"] + [c for c in old.columns if c not in ("label", "index")]
    for extra in ("status", "reason", *measured.columns):
        if extra not in columns:
            columns.append(extra)
    table = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    if len(table):
        table["status"] = table["status"].fillna("chromosome")
        table["reason"] = table["reason"].fillna("")
    return table.drop(columns=["index"], errors="ignore")
