"""Reviewing what the learned segmentation model (:mod:`.learned`) did: each object's
probability, the objects it is least sure about first, and what it changed against the rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_chromosome_sort.segmentation.learned.model import SegmentationModel
from napari_chromosome_sort.segmentation.result import Segmentation
from napari_chromosome_sort.segmentation.truth import BOX_COLUMNS, box_iou, greedy_match

_P_IN_REASON = re.compile(r"learned: p=([0-9.]+)")
_SPLIT_REASON = re.compile(r"split from a touching group \((\d+) pieces\)")
#: The objects-table column that holds the model's probability of each object, for review.
P_COLUMN = "model_p"


_NEEDED = ("area", "eccentricity", "solidity", "major_axis", "minor_axis", "mean_intensity")


def model_probabilities(objects: pd.DataFrame, model: SegmentationModel) -> np.ndarray:
    """The model's probability of each object of an objects table: its :data:`P_COLUMN`, else
    the ``learned: p=...`` of its reason, else computed from its measures (NaN for an object
    without them, e.g. one painted by hand)."""
    p = np.full(len(objects), np.nan)
    if len(objects) == 0:
        return p
    if P_COLUMN in objects:
        p = pd.to_numeric(objects[P_COLUMN], errors="coerce").to_numpy(float)
    if "reason" in objects:
        given = objects["reason"].astype(str).str.extract(_P_IN_REASON, expand=False)
        p = np.where(np.isnan(p), given.astype(float).to_numpy(), p)
    missing = np.isnan(p)
    if missing.any() and set(_NEEDED) <= set(objects.columns):
        measured = objects[list(_NEEDED)].notna().all(axis=1).to_numpy()
        todo = missing & measured
        if todo.any():
            spread = objects[measured]
            p[todo] = model.probabilities(objects[todo], spread)
    return p


def least_sure_first(seg: Segmentation | pd.DataFrame, model: SegmentationModel) -> pd.DataFrame:
    """The objects of ``seg`` (a segmentation or its objects table) with their status and the
    model's probability ``p``, those the model is least sure about first.

    Uncertainty is the distance of the model's probability from its threshold on the logit
    scale (``certainty``). Probabilities come from :func:`model_probabilities`: for a
    segmentation the model already set they are the ones it gave; objects without one (painted
    by hand) come last."""
    objects = seg if isinstance(seg, pd.DataFrame) else seg.objects
    if len(objects) == 0:
        return pd.DataFrame(columns=["label", "status", "p", "certainty"])
    p = model_probabilities(objects, model)
    q = np.clip(p, 1e-6, 1 - 1e-6)
    t = model.threshold
    certainty = np.abs(np.log(q / (1 - q)) - np.log(t / (1 - t)))
    table = pd.DataFrame(
        {
            "label": objects["label"].astype(int).to_numpy(),
            "status": objects["status"].to_numpy(),
            "p": p,
            "certainty": certainty,
        }
    )
    return table.sort_values(["certainty", "label"], kind="stable").reset_index(drop=True)


@dataclass
class ModelChanges:
    """What a model changed against the rules on one spread: kept objects with the model and
    with the rules alone, objects split, rejected and newly kept, and one row per change
    (``change``: "split", "rejected" or "kept"; ``centroid_y``, ``centroid_x``)."""

    kept: int
    rules_kept: int
    split: int
    rejected: int
    added: int
    objects: pd.DataFrame

    def summary(self) -> str:
        """One line: "model: 47 kept (rules: 44); 3 split, 1 rejected"."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.split, "split"),
                (self.rejected, "rejected"),
                (self.added, "kept that the rules did not keep"),
            )
            if n
        ]
        changed = ", ".join(parts) if parts else "no object changed"
        return f"model: {self.kept} kept (rules: {self.rules_kept}); {changed}"


def compare_with_rules(rules: Segmentation, learned: Segmentation) -> ModelChanges:
    """What the model changed on a spread (:class:`ModelChanges`): the objects of the two
    segmentations, but the pieces of the model's splits, are matched one-to-one by box
    (IoU >= 0.5). A rules-kept object whose match
    the model does not keep is "split" when pieces of a model split lie in it, else "rejected";
    a model-kept object whose match the rules did not keep (or that has none) is "kept"."""
    r, m = rules.objects, learned.objects
    columns = ["change", "centroid_y", "centroid_x"]
    if len(m) == 0 and len(r) == 0:
        return ModelChanges(0, 0, 0, 0, 0, pd.DataFrame(columns=columns))
    r_kept = (r["status"] == "chromosome").to_numpy()
    m_kept = (m["status"] == "chromosome").to_numpy()
    piece = m["reason"].astype(str).str.match(_SPLIT_REASON.pattern).to_numpy() & m_kept
    whole = np.flatnonzero(~piece)
    boxes = m[BOX_COLUMNS].to_numpy(float)[whole]
    pairs = [(whole[i], j) for i, j in greedy_match(box_iou(boxes, r[BOX_COLUMNS].to_numpy(float)))]
    rules_of = dict(pairs)
    learned_of = {j: i for i, j in pairs}
    piece_centres = m.loc[piece, ["centroid_y", "centroid_x"]].to_numpy(float)
    rows, used_pieces = [], np.zeros(len(piece_centres), bool)
    for j in np.flatnonzero(r_kept):
        i = learned_of.get(j)
        if i is not None and m_kept[i]:
            continue
        y0, x0, y1, x1 = r[BOX_COLUMNS].iloc[j].to_numpy(float)
        inside = (
            (piece_centres[:, 0] >= y0)
            & (piece_centres[:, 0] < y1)
            & (piece_centres[:, 1] >= x0)
            & (piece_centres[:, 1] < x1)
        )
        used_pieces |= inside
        change = "split" if inside.any() else "rejected"
        rows.append((change, r["centroid_y"].iloc[j], r["centroid_x"].iloc[j]))
    orphans = np.flatnonzero(piece)[~used_pieces]
    for i in np.flatnonzero(m_kept & ~piece):
        j = rules_of.get(i)
        if j is None or not r_kept[j]:
            rows.append(("kept", m["centroid_y"].iloc[i], m["centroid_x"].iloc[i]))
    rows += [("kept", m["centroid_y"].iloc[i], m["centroid_x"].iloc[i]) for i in orphans]
    table = pd.DataFrame(rows, columns=columns)
    return ModelChanges(
        kept=int(m_kept.sum()),
        rules_kept=int(r_kept.sum()),
        split=int((table["change"] == "split").sum()),
        rejected=int((table["change"] == "rejected").sum()),
        added=int((table["change"] == "kept").sum()),
        objects=table,
    )
