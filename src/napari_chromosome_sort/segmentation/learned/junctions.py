"""Learned junction score: is a kept object two chromosomes touching, and where do they meet?

On crowded fluorescence spreads two chromosomes touching end to end or side by side often stay
one object of chromosome size: too small for the size rule, with no neck narrow enough for the
neck split. Every kept object of at least :data:`MIN_REL_AREA` x the spread's median kept
chromosome that the watershed of :func:`.splitting.split_by_levels` cuts into chromosome-sized
pieces offers that cut; nine measures of it (:data:`FEATURES`: how thick the object is for one
chromosome, how dim and how long the cut is, how even the pieces are, how elongated the whole and
its pieces are, the bend between the pieces, the object's size and solidity) go into a
standardised logistic regression trained on the ADIR DAPI karyotype masks (target: the pieces
match more truth chromosomes than the whole; ``python -m validation dapi --junctions``). The
cut is taken when its probability is at least the model's threshold (0.5). The coefficients
ship as ``data/junction_model.json``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation.learned.json_model import JsonModel

FEATURES = (
    "max_dist_rel",
    "valley",
    "cut_rel",
    "piece_area_ratio",
    "whole_ecc",
    "min_piece_ecc",
    "angle",
    "log_rel_area",
    "whole_solidity",
)
MODEL_FORMAT = "chromosort-junction-model/1"
DEFAULT_MODEL = "junction_model.json"
#: kept objects at least this x the spread's median kept chromosome offer a cut
MIN_REL_AREA = 0.8


@dataclass(frozen=True)
class JunctionModel(JsonModel):
    """A standardised logistic regression over :data:`FEATURES` of a cut."""

    KIND = "junction"
    FORMAT = MODEL_FORMAT
    DEFAULT_FILE = DEFAULT_MODEL

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    source: str = ""
    trained: str = ""

    def __post_init__(self):
        if tuple(self.features) != FEATURES:
            raise ChromosortError(
                f"junction model expects features {list(self.features)}, this version computes "
                f"{list(FEATURES)}"
            )
        for name in ("mean", "scale", "coef"):
            if len(getattr(self, name)) != len(FEATURES):
                raise ChromosortError(f"junction model: '{name}' must have {len(FEATURES)} values")
        if not all(np.isfinite(self.scale)) or min(self.scale) <= 0:
            raise ChromosortError("junction model: 'scale' must be positive")

    def probability(self, x: np.ndarray) -> np.ndarray:
        """The probability that each row of ``x`` (:data:`FEATURES`) is a right cut."""
        z = (np.atleast_2d(np.asarray(x, float)) - self.mean) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))


def load_junction_model(path: str | Path | None = None) -> JunctionModel:
    """The junction model at ``path``, or the one shipped with the package (read once)."""
    return _shipped_model() if path is None else JunctionModel.read(path)


@functools.cache
def _shipped_model() -> JunctionModel:
    return JunctionModel.read(None)


def fit_junction_model(x: np.ndarray, right: np.ndarray, source: str = "") -> JunctionModel:
    """The logistic regression (L2, C = 1) of cuts ``x`` (:data:`FEATURES`) that were right."""
    import datetime

    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale <= 0] = 1.0
    head = LogisticRegression(C=1.0, max_iter=5000).fit((x - mean) / scale, np.asarray(right, bool))
    return JunctionModel(
        FEATURES,
        tuple(map(float, mean)),
        tuple(map(float, scale)),
        tuple(map(float, head.coef_[0])),
        float(head.intercept_[0]),
        source=source,
        trained=datetime.date.today().isoformat(),
    )


# ----------------------------------------------------------------------------- the cuts


@dataclass
class Cut:
    """A kept object cut into pieces: its label, window, pieces (1..k in the window, 0 outside)
    and the :data:`FEATURES` of the cut."""

    label: int
    window: tuple[slice, slice]
    pieces: np.ndarray
    features: np.ndarray


def cut_features(pieces: np.ndarray, signal: np.ndarray, width: float, typical: float):
    """The :data:`FEATURES` of the cut of one object (``pieces`` > 0) into ``pieces``."""
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    from napari_chromosome_sort.segmentation.splitting import neck_contacts

    whole = pieces > 0
    n = int(pieces.max())
    cut = np.zeros(whole.shape, bool)  # pixels of a higher piece touching a lower one
    for k in range(1, n):
        cut |= ndi.binary_dilation(pieces == k) & (pieces > k)
    regions = regionprops(pieces)
    areas = np.array([r.area for r in regions], float)
    peaks = [np.quantile(signal[pieces == r.label], 0.9) for r in regions]
    (outline,) = regionprops(whole.astype(np.uint8))
    angle = 90.0
    if n == 2:
        turn = np.angle(np.exp(2j * (regions[0].orientation - regions[1].orientation))) / 2
        angle = float(np.degrees(abs(turn)))
    cuts = neck_contacts(pieces, n)
    return np.array(
        [
            ndi.distance_transform_edt(np.pad(whole, 1)).max() / width,
            signal[cut].mean() / np.median(peaks) if cut.any() else 1.0,
            max(cuts.values()) / width if cuts else 0.0,
            areas.min() / areas.max(),
            outline.eccentricity,
            min(r.eccentricity for r in regions),
            angle,
            np.log(whole.sum() / typical),
            outline.solidity,
        ],
        float,
    )


def propose_cuts(label_img, kept_labels, signal, typical, width, params, pairing) -> list[Cut]:
    """The cut of each kept object of at least :data:`MIN_REL_AREA` x ``typical`` (the median
    kept chromosome) that :func:`.splitting.split_by_levels` offers (every piece
    chromosome-sized), with its features; not a cut into pieces that the sister-chromatid
    pairing would group again (``pairing`` = (median object, pair limits) of the spread:
    :func:`.splitting.pairs_as_sisters`), which are the two chromatids of one chromosome."""
    from scipy import ndimage as ndi

    from napari_chromosome_sort.segmentation.splitting import pairs_as_sisters, whole_pieces

    if not (width and typical > 0):
        return []
    areas = np.bincount(label_img.ravel())
    windows = ndi.find_objects(label_img)
    cuts = []
    for label in kept_labels:
        if label >= len(areas) or areas[label] < MIN_REL_AREA * typical:
            continue
        window = windows[label - 1]
        local = label_img[window] == label
        pieces = whole_pieces(local, signal[window], typical, params, width)
        if pieces is None or pairs_as_sisters(
            pieces, int(pieces.max()), width, pairing[0], params, pairing[1]
        ):
            continue
        x = cut_features(pieces, signal[window], width, typical)
        cuts.append(Cut(int(label), window, pieces, x))
    return cuts


def split_junctions(label_img, objects, signal, width, params, polarity, pairing) -> int:
    """Cut the kept objects whose cut the junction model takes (module docstring), in place;
    returns how many objects were cut. Runs where ``params.junction_score`` is switched on
    (:func:`.params.switched_on`: "auto" = fluorescence spreads only). ``pairing``: the
    spread's (median object, sister-chromatid pair limits)."""
    from napari_chromosome_sort.segmentation.params import switched_on

    if not (objects and switched_on(params.junction_score, polarity)):
        return 0
    model = load_junction_model(params.junction_model)
    areas = np.bincount(label_img.ravel())
    kept = [o["label"] for o in objects if o["status"] == "chromosome"]
    if not kept:
        return 0
    typical = float(np.median(areas[kept]))
    cuts = propose_cuts(label_img, kept, signal, typical, width, params, pairing)
    if not cuts:
        return 0
    chances = model.probability(np.stack([c.features for c in cuts]))
    by_label = {o["label"]: o for o in objects}
    done = 0
    for cut, chance in zip(cuts, chances, strict=True):
        if chance < model.threshold:
            continue
        ids = np.unique(cut.pieces[cut.pieces > 0])
        reason = (
            f"one of {ids.size} touching chromosomes cut apart where they meet "
            f"(learned: p={chance:.2f})"
        )
        window = label_img[cut.window]
        by_label[cut.label].update(reason=reason, n_parts=1)
        by_label[cut.label].pop("sized", None)
        for piece in ids[1:]:  # the first piece keeps the object's label
            new = int(label_img.max()) + 1
            window[cut.pieces == piece] = new
            objects.append({"label": new, "status": "chromosome", "reason": reason, "n_parts": 1})
        done += 1
    return done
