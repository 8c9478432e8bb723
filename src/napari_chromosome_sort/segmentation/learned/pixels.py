"""Learned pixel classes: background, chromosome, the contact of two chromosomes, overlap.

A small random forest on scikit-image's multiscale features (:func:`pixel_features`: Gaussian
intensity, edges and texture at five scales, as ilastik and APOC use) of the spread's
background-corrected signal, scaled by the spread's typical object peak so that it carries
across exposures. It is trained on the ``K.tif`` karyotype masks of the ADIR DAPI spreads
(:func:`pixel_targets`; ``python -m validation dapi-pixels``) and its trees ship as arrays in
``data/pixel_model.safetensors`` (no pickle): :func:`predict_proba` walks them with numpy.

:func:`cut_clusters` (``SegmentationParams.pixel_classes``) uses the classes where the rules
stop: each object the rules set aside as a ``cluster`` is cut into its learned chromosomes, and
a piece on learned overlap pixels becomes one chromosome of a crossing (``crossing-resolved``).
:func:`split_overlaps` resolves an object at a compact region of learned overlap
(:func:`.crossings.resolve.resolve_at_overlap`); tried held out on kept objects and on the
clusters the cut leaves whole, it is off in the shipped settings (``docs/validation.md``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic
from napari_chromosome_sort.segmentation.params import switched_on

#: the classes, in the order of the probability planes
CLASSES = ("background", "chromosome", "contact", "overlap")
BACKGROUND, CHROMOSOME, CONTACT, OVERLAP = range(4)
IGNORE = -1  # K.tif overlap specks and outline pixels: not trained on
MODEL_FORMAT = "chromosort-pixel-forest/1"
DEFAULT_MODEL = "pixel_model.safetensors"
#: the feature scales, in chromatid widths (so that the features carry across magnifications)
SIGMAS = (0.125, 0.25, 0.5, 1.0, 2.0)


def pixel_features(signal: np.ndarray, typical_peak: float, width: float) -> np.ndarray:
    """(H, W, F) float32 features of a corrected signal (objects bright), scaled by the
    spread's typical object peak, at :data:`SIGMAS` x the chromatid ``width`` (px)."""
    from skimage.feature import multiscale_basic_features

    scaled = np.asarray(signal, np.float32) / max(float(typical_peak), 1e-6)
    features = multiscale_basic_features(
        np.clip(scaled, 0, 4),
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=max(SIGMAS[0] * width, 0.5),
        sigma_max=max(SIGMAS[-1] * width, 0.5),
        num_sigma=len(SIGMAS),
        channel_axis=None,
    )
    return features.astype(np.float32)


def pixel_targets(truth: np.ndarray, width: float) -> np.ndarray:
    """Per pixel of a ``K.tif`` karyotype mask (0 background, 1-24 classes, 255 overlap): the
    class index of :data:`CLASSES`, or :data:`IGNORE`.

    ``contact``: a chromosome pixel within 1 px of a pixel of another class; ``overlap``: real
    overlap regions (connected 255 pixels of at least half a chromatid width squared); smaller
    255 specks and the ring of 1 px around the chromosomes (outline uncertainty) are ignored.
    """
    from scipy import ndimage as ndi

    truth = np.asarray(truth)
    out = np.full(truth.shape, BACKGROUND, np.int8)
    chromosome = (truth > 0) & (truth < 255)
    out[chromosome] = CHROMOSOME
    other = np.zeros(truth.shape, bool)
    for cls in np.unique(truth[chromosome]):
        this = truth == cls
        near = ndi.binary_dilation(this, iterations=1)
        other |= near & chromosome & ~this
    out[other] = CONTACT
    overlap = truth == 255
    comp, _ = ndi.label(overlap)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    real = (sizes >= 0.5 * width**2)[comp] & overlap
    out[overlap & ~real] = IGNORE
    out[real] = OVERLAP
    ring = ndi.binary_dilation(truth > 0, iterations=1) & (truth == 0)
    out[ring] = IGNORE
    return out


@dataclass
class PixelForest:
    """The trees of a fitted forest as flat arrays (one row of nodes per tree)."""

    feature: np.ndarray  # (T, N) int32, -1 at leaves
    threshold: np.ndarray  # (T, N) float32
    left: np.ndarray  # (T, N) int32
    right: np.ndarray  # (T, N) int32
    value: np.ndarray  # (T, N, C) float32: class probabilities at each node
    n_features: int
    provenance: str = ""

    @classmethod
    def from_sklearn(cls, forest) -> PixelForest:
        """From a fitted scikit-learn ``RandomForestClassifier`` / ``ExtraTreesClassifier``."""
        trees = [est.tree_ for est in forest.estimators_]
        n = max(t.node_count for t in trees)
        n_classes = len(CLASSES)
        feature = np.full((len(trees), n), -1, np.int32)
        threshold = np.zeros((len(trees), n), np.float32)
        left = np.zeros((len(trees), n), np.int32)
        right = np.zeros((len(trees), n), np.int32)
        value = np.zeros((len(trees), n, n_classes), np.float32)
        for i, t in enumerate(trees):
            k = t.node_count
            leaf = t.children_left[:k] < 0
            feature[i, :k] = np.where(leaf, -1, t.feature[:k])
            threshold[i, :k] = t.threshold[:k]
            left[i, :k] = np.where(leaf, np.arange(k), t.children_left[:k])
            right[i, :k] = np.where(leaf, np.arange(k), t.children_right[:k])
            counts = t.value[:k, 0, :]
            probs = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)
            value[i, :k][:, forest.classes_.astype(int)] = probs
        return cls(feature, threshold, left, right, value, int(forest.n_features_in_))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(..., C) class probabilities of (..., F) features: the mean over the trees."""
        flat = features.reshape(-1, features.shape[-1])
        if flat.shape[1] != self.n_features:
            raise ChromosortError(
                f"pixel model expects {self.n_features} features per pixel, got {flat.shape[1]}"
            )
        out = np.zeros((flat.shape[0], self.value.shape[2]), np.float32)
        rows = np.arange(flat.shape[0])
        for t in range(self.feature.shape[0]):
            node = np.zeros(flat.shape[0], np.int32)
            while True:
                feat = self.feature[t, node]
                inner = feat >= 0
                if not inner.any():
                    break
                go_left = flat[rows, np.maximum(feat, 0)] <= self.threshold[t, node]
                nxt = np.where(go_left, self.left[t, node], self.right[t, node])
                node = np.where(inner, nxt, node)
            out += self.value[t, node]
        out /= self.feature.shape[0]
        return out.reshape(*features.shape[:-1], -1)

    def save(self, path: Path) -> None:
        """Write the forest as safetensors (atomically)."""
        from safetensors.numpy import save

        tensors = {
            "feature": self.feature,
            "threshold": self.threshold,
            "left": self.left,
            "right": self.right,
            "value": self.value,
        }
        meta = {
            "format": MODEL_FORMAT,
            "classes": ",".join(CLASSES),
            "sigmas": ",".join(f"{s:g}" for s in SIGMAS),
            "n_features": str(self.n_features),
            "provenance": self.provenance,
        }
        write_bytes_atomic(Path(path), save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: Path | None = None) -> PixelForest:
        """The forest at ``path`` (default: the shipped one)."""
        from safetensors import SafetensorError, safe_open

        if path is None:
            path = resources.files("napari_chromosome_sort") / "data" / DEFAULT_MODEL
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (OSError, ValueError, SafetensorError) as err:
            raise ChromosortError(f"cannot read pixel model {path}: {err}") from err
        if meta.get("format") != MODEL_FORMAT:
            raise ChromosortError(
                f"{path} is not a chromosort pixel model (format {meta.get('format')!r})"
            )
        provenance = meta.get("provenance", "")
        return cls(n_features=int(meta["n_features"]), provenance=provenance, **arrays)


@functools.lru_cache(maxsize=1)
def shipped_model() -> PixelForest:
    """The pixel model in the package data, read once."""
    return PixelForest.load()


def pixel_classes_on(params, polarity: str) -> bool:
    """Whether the learned pixel classes apply (by ``pixel_classes`` and the polarity): they
    were learned on fluorescence (DAPI) spreads only."""
    return switched_on(params.pixel_classes, polarity)


def cut_clusters(label_img, objects, corrected, typical_peak, width, params, polarity) -> dict:
    """:func:`refine_objects` with the model and constants of ``params``, where
    :func:`pixel_classes_on`; returns the shared crossing masks of the pieces it resolves."""
    if not (objects and pixel_classes_on(params, polarity)):
        return {}
    model = shipped_model() if params.pixel_model is None else PixelForest.load(params.pixel_model)
    proba = model.predict_proba(pixel_features(corrected, typical_peak, width))
    return refine_objects(
        label_img,
        objects,
        proba,
        width,
        piece_overlap_min=params.pixel_overlap_min,
        max_piece=params.pixel_max_piece,
        min_seed=params.pixel_min_seed,
    )


def fit_forest(features: np.ndarray, targets: np.ndarray, seed: int = 0, **options) -> PixelForest:
    """A random forest on (N, F) pixel features and their class indices (balanced classes)."""
    from sklearn.ensemble import RandomForestClassifier

    settings = {"n_estimators": 12, "max_depth": 12, "min_samples_leaf": 20, "n_jobs": 1}
    settings.update(options)
    forest = RandomForestClassifier(
        class_weight="balanced", random_state=seed, max_features="sqrt", **settings
    )
    forest.fit(features, targets)
    return PixelForest.from_sklearn(forest)


def sample_pixels(targets: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to ``per_class`` random pixels of every class (ignored ones left out)."""
    flat = targets.ravel()
    picks = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(flat == c)
        if idx.size:
            picks.append(rng.choice(idx, min(per_class, idx.size), replace=False))
    return np.concatenate(picks) if picks else np.zeros(0, int)


def _relabel(labels):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)


def refine_objects(
    label_img: np.ndarray,
    objects: list[dict],
    proba: np.ndarray,
    width: float,
    piece_overlap_min: float = 0.3,
    min_seed: float = 0.5,
    max_piece: float = 2.0,
    kept_overlap_min: float = 0.0,
    overlap_max_bend: float = 60.0,
    cluster_overlap_min: float = 0.0,
) -> dict:
    """The rules' clusters cut by the learned pixel classes, in place; returns the full masks of
    the pieces that share a crossing (``{label: (y0, x0, mask)}``).

    Each ``cluster`` is cut into its learned chromosomes: seeds where ``chromosome`` is the
    likeliest class (at least ``min_seed`` chromatid widths squared), grown by watershed inside
    the object. A piece from ¼ to ``max_piece`` x the median kept chromosome is kept, unless it
    holds ``piece_overlap_min`` x width^2 pixels whose likeliest class is ``overlap``: then, if
    at least ½ the median, it is one chromosome of a crossing (``crossing-resolved``, its full
    mask with the overlap pixels it touches); smaller (an arm of an X) it stays in the cluster.

    With ``cluster_overlap_min`` > 0, a cluster the cut left whole that holds one connected
    region of at least that x width^2 learned-overlap pixels is resolved at it
    (:func:`.crossings.resolve.resolve_at_overlap`, each chromosome bent at most
    ``overlap_max_bend`` degrees and at least ½ the median) into two ``crossing-resolved``
    halves. With ``kept_overlap_min`` > 0, a kept object holding such a region is resolved at
    it (halves of at least ¼ the median), else set aside as a ``cluster``.
    """
    from scipy import ndimage as ndi

    n = int(label_img.max()) + 1
    areas = np.bincount(label_img.ravel(), minlength=n)
    kept = [o["label"] for o in objects if o["status"] == "chromosome"]
    median = float(np.median(areas[kept])) if kept else 0.0
    masks: dict = {}
    if median <= 0:
        return masks
    slices = ndi.find_objects(label_img)
    limits = (0.25 * median, max_piece * median, piece_overlap_min * width**2)
    for o in list(objects):
        if o["status"] == "cluster" and o["label"] <= len(slices) and slices[o["label"] - 1]:
            sl = slices[o["label"] - 1]
            masks.update(
                _cut_cluster(label_img, objects, o, sl, proba[sl], min_seed * width**2, limits)
            )
    if cluster_overlap_min > 0:  # the clusters the cut left whole
        whole = np.bincount(label_img.ravel(), minlength=n)[:n] == areas
        masks.update(
            split_overlaps(
                label_img,
                objects,
                proba,
                width,
                cluster_overlap_min,
                median,
                overlap_max_bend,
                status="cluster",
                only=set(np.flatnonzero(whole)),
            )
        )
    if kept_overlap_min > 0:
        masks.update(
            split_overlaps(
                label_img, objects, proba, width, kept_overlap_min, median, overlap_max_bend
            )
        )
    return masks


def split_overlaps(
    label_img,
    objects,
    proba,
    width,
    min_overlap,
    median,
    max_bend=60.0,
    status="chromosome",
    only: set | None = None,
) -> dict:
    """Objects of ``status`` on a compact learned overlap (``min_overlap`` x width^2, one
    connected region) resolved at it into two ``crossing-resolved`` halves, in place; returns
    the second halves' full masks. Kept objects (halves of at least ¼ ``median``) that are not
    resolved are set aside as ``cluster``; clusters (halves of at least ½ ``median``, whole
    chromosomes) are left as they are. ``only``: the labels tried (default: all)."""
    from scipy import ndimage as ndi

    from napari_chromosome_sort.segmentation.crossings.resolve import resolve_at_overlap

    slices = ndi.find_objects(label_img)
    masks: dict = {}
    min_half = (0.25 if status == "chromosome" else 0.5) * median
    tried = [o for o in objects if o["status"] == status and o["n_parts"] == 1]
    for o in [o for o in tried if only is None or o["label"] in only]:
        sl = slices[o["label"] - 1] if o["label"] <= len(slices) else None
        if sl is None:
            continue
        local = label_img[sl] == o["label"]
        regions, n = ndi.label((proba[sl].argmax(-1) == OVERLAP) & local)
        sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
        if n == 0 or sizes.max() < min_overlap * width**2:
            continue
        centre = regions == int(np.argmax(sizes)) + 1
        size = f"{sizes.max()} px = {sizes.max() / width**2:.1f} x width^2 >= {min_overlap:g}"
        found = resolve_at_overlap(local, centre, width, max_bend=max_bend)
        if found is None or min(found.first.sum(), found.second.sum()) < min_half:
            if status != "chromosome":
                continue
            o["status"] = "cluster"
            o["reason"] = (
                f"holds a compact region of learned overlap ({size}): two chromosomes lying "
                "over each other, not resolved"
            )
            continue
        new = int(label_img.max()) + 1
        why = (
            f"one of two chromosomes lying over each other at a learned overlap ({size}, "
            f"{found.n_arms} arms, each bent at most {found.bend_deg:.0f} deg)"
        )
        masks[new] = found.write(label_img, objects, o, sl, new, why, "overlap")
    return masks


def _cut_cluster(label_img, objects, cluster, sl, proba, min_seed_px, limits) -> dict:
    """Cut one cluster (window ``sl``) into its learned chromosomes; see :func:`refine_objects`."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    min_area, max_area, overlap_limit = limits
    mask = label_img[sl] == cluster["label"]
    best = proba.argmax(-1)
    seeds, k = ndi.label((best == CHROMOSOME) & mask)
    small = np.bincount(seeds.ravel(), minlength=k + 1) < min_seed_px
    small[0] = False
    seeds[small[seeds]] = 0
    seeds, _, _ = _relabel(seeds)
    k = int(seeds.max())
    if k < 2:
        return {}
    pieces = watershed(-proba[..., CHROMOSOME], seeds, mask=mask)
    on_overlap = (best == OVERLAP) & mask
    piece_areas = np.bincount(pieces.ravel(), minlength=k + 1)
    piece_overlap = np.bincount(pieces[on_overlap], minlength=k + 1)
    sized = (piece_areas >= min_area) & (piece_areas <= max_area)
    # a piece on the overlap is a whole chromosome of the crossing only when it is at least
    # half a typical chromosome; an arm of an X (cut off at the overlap) stays in the cluster
    sized &= (piece_overlap < overlap_limit) | (piece_areas >= 2 * min_area)
    masks, cut = {}, 0
    overlap_parts, _ = ndi.label(on_overlap)
    for p in np.flatnonzero(sized[1:]) + 1:
        piece = pieces == p
        new = int(label_img.max()) + 1
        crossing = piece_overlap[p] >= overlap_limit
        label_img[sl][piece] = new
        reason = f"cut from a cluster by the learned pixel classes ({k} pieces)"
        if crossing:
            touched = np.unique(overlap_parts[ndi.binary_dilation(piece, iterations=2)])
            shared = np.isin(overlap_parts, touched[touched > 0])
            masks[new] = (sl[0].start, sl[1].start, piece | shared)
            reason = (
                f"one chromosome of a crossing ({piece_overlap[p]} px of learned overlap); "
                + (reason.replace("cut", "cut at it"))
            )
        status = "crossing-resolved" if crossing else "chromosome"
        objects.append({"label": new, "status": status, "reason": reason, "n_parts": 1})
        cut += 1
    if cut:
        cluster["reason"] += f"; {cut} pieces cut out by the learned pixel classes"
    return masks
