"""Keep an objects table in step with its label image after hand edits; undo; edit shades."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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


def restore_objects(
    labels: np.ndarray, current: pd.DataFrame, before: pd.DataFrame
) -> pd.DataFrame:
    """The objects table after a label-image edit was undone.

    ``before`` is the table as it was before that edit. Objects the undo brought back or changed
    get their row from ``before`` (status, reason and measures); every other object keeps its
    ``current`` row, so a status set after the edit stays.
    """
    measured = measure_labels(labels).set_index("label")
    current = current.copy() if len(current) else pd.DataFrame({"label": []})
    current["label"] = current["label"].astype(int)
    current_rows = current.drop_duplicates("label").set_index("label")
    touched = set()
    for label, meas in measured.iterrows():
        if label not in current_rows.index:
            touched.add(int(label))
            continue
        row = current_rows.loc[label]
        if "area" in row and not np.isclose(float(row["area"]), meas["area"]):
            touched.add(int(label))
    before = before.copy() if len(before) else pd.DataFrame({"label": []})
    before["label"] = before["label"].astype(int)
    from_before = before[before["label"].isin(touched)]
    kept = current[~current["label"].isin(from_before["label"])]
    merged = pd.concat([kept, from_before], ignore_index=True).sort_values("label")
    return reconcile_objects(labels, merged)


@dataclass
class EditStep:
    """One undoable step: a change undone by ``undo``, or a label-image edit (``undo`` None)
    undone by the labels layer itself, with the objects table as it was before it."""

    description: str
    undo: Callable[[], None] | None = None
    table_before: pd.DataFrame | None = None


class EditHistory:
    """The undo steps of one objects layer, oldest first: status/class changes and edits of
    the label image, in the order the user made them."""

    def __init__(self, limit: int = 200):
        self.steps: deque[EditStep] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self.steps)

    def add_change(self, description: str, undo: Callable[[], None]) -> None:
        """Record a status/class change and the call that undoes it."""
        self.steps.append(EditStep(description, undo=undo))

    def add_label_edit(self, table_before: pd.DataFrame) -> None:
        """Record a label-image edit with the objects table as it was before it."""
        self.steps.append(EditStep("label edit", table_before=table_before.copy()))

    def pop(self) -> EditStep | None:
        """Remove and return the newest step (None when there is none)."""
        return self.steps.pop() if self.steps else None

    def pop_label_edit(self) -> EditStep | None:
        """Remove and return the newest label-image edit (the labels layer undid it)."""
        for step in reversed(self.steps):
            if step.undo is None:
                self.steps.remove(step)
                return step
        return None

    def forget_label_edits(self) -> None:
        """Drop the label-image edits (the label image was replaced: they cannot be undone)."""
        self.steps = deque((s for s in self.steps if s.undo is not None), maxlen=self.steps.maxlen)


def neighbour_shades(labels: np.ndarray, which: list[int], n_shades: int = 3) -> dict[int, int]:
    """A shade index (0..n_shades-1) for each label in ``which``, different for touching ones.

    Used to colour edited objects so the two halves of a split, or a merge beside its
    neighbours, stand apart (greedy colouring of the 4-connected touching graph).
    """
    labels = np.asarray(labels)
    wanted = set(int(v) for v in which)
    touching: dict[int, set[int]] = {label: set() for label in wanted}
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        for u, v in set(zip(a[edge].tolist(), b[edge].tolist(), strict=True)):
            if u in wanted:
                touching[u].add(v)
            if v in wanted:
                touching[v].add(u)
    shades: dict[int, int] = {}
    for label in sorted(wanted):
        used = {shades[n] for n in touching[label] if n in shades}
        shades[label] = next((s for s in range(n_shades) if s not in used), label % n_shades)
    return shades
