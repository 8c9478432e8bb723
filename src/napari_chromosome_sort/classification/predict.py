"""Classify crops, or whole spreads (segment -> crop -> classify [-> Grad-CAM])."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from napari_chromosome_sort.classification.image_match import image_warnings
from napari_chromosome_sort.crops import DEFAULT_MARGIN, crop_chromosomes
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.io import require_contrast
from napari_chromosome_sort.progress import Progress, relay, run_to_end
from napari_chromosome_sort.segmentation import segment_spread

BBOX_COLUMNS = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]


@dataclass
class SpreadPrediction:
    """Result of :func:`predict_spread`: the segmentation, one table row per kept object
    (``label, bbox_*, class, p_<class>...``), its crops, the optional Grad-CAM (each crop's map
    in ``crop_maps``, in the crops' order, and all of them pasted on the image in
    ``gradcam_map``) and warnings that the image is unlike the model's training images."""

    segmentation: object
    table: pd.DataFrame
    crops: list = field(default_factory=list)
    gradcam_map: np.ndarray | None = None
    crop_maps: list | None = None
    warnings: list[str] = field(default_factory=list)

    def crop_map(self, label: int):
        """``(crop, Grad-CAM map on it)`` of object ``label``; the map is None without
        Grad-CAM, and both are None for an object not classified."""
        for i, crop in enumerate(self.crops):
            if int(crop.label) == int(label):
                return crop, (self.crop_maps[i] if self.crop_maps else None)
        return None, None


def _probability_table(model, proba: np.ndarray) -> pd.DataFrame:
    classes = list(model.classes)
    proba = np.asarray(proba, dtype=np.float64).reshape(-1, len(classes))
    table = pd.DataFrame({"class": [classes[i] for i in proba.argmax(1)] if len(proba) else []})
    for j, name in enumerate(classes):
        table[f"p_{name}"] = proba[:, j]
    return table


def calibration_priors(model) -> np.ndarray:
    """Class priors the model's posteriors are calibrated to: the training class frequencies
    when the head carries the training-prior correction (a fitted logit shift, the default) or
    the head was trained without class balancing; uniform for an uncorrected class-balanced head
    or when the training counts are unknown."""
    import torch

    k = len(model.classes)
    training = dict(getattr(model, "metadata", {}).get("training") or {})
    balanced = (training.get("config") or {}).get("class_balance", True)
    counts = training.get("counts") or {}
    shift = getattr(getattr(model, "head", None), "logit_shift", None)
    corrected = shift is not None and bool(torch.any(shift != 0))
    freq = np.array([float(counts.get(c, 0)) for c in model.classes])
    if (corrected or not balanced) and freq.sum() > 0:
        return freq / freq.sum()
    return np.full(k, 1.0 / k)


# Dirichlet pseudo-counts of the MAP prior estimate (one crop's worth, spread evenly over the
# classes): keeps a small spread from collapsing onto its main class (docs/validation.md)
PRIOR_PSEUDO_COUNTS = 1.0


PRIOR_METHODS = ("em", "bbse")


@dataclass(frozen=True)
class PriorOptions:
    """How :func:`predict_spread` and :func:`predict_crops` treat the class priors, checked on
    creation so that a bad value fails before any spread is run.

    ``adapt``: estimate each sample's class priors without labels instead of assuming the
    training class frequencies; None (default): as the model records (``prediction_priors``,
    chosen leave-one-spread-out when it was trained beside a reference set on crops of 3 or
    more spreads), off for a model without a record (docs/validation.md). ``pseudo_counts``
    (None: the model's recorded choice, else :data:`PRIOR_PSEUDO_COUNTS`), ``method`` and
    ``calibrate``: how, see :func:`estimate_priors`. :func:`resolve_priors` fills the Nones."""

    adapt: bool | None = None
    pseudo_counts: float | None = None
    method: str = "em"
    calibrate: bool = False

    def __post_init__(self):
        given = self.pseudo_counts
        pseudo = None if given is None else float(given)
        if pseudo is not None and not 0 <= pseudo < float("inf"):
            raise ChromosortError(f"prior pseudo-counts must be a number >= 0, got {given}")
        if self.method not in PRIOR_METHODS:
            raise ChromosortError(
                f"unknown prior method {self.method!r}; use one of {PRIOR_METHODS}"
            )
        object.__setattr__(self, "adapt", None if self.adapt is None else bool(self.adapt))
        object.__setattr__(self, "pseudo_counts", pseudo)
        object.__setattr__(self, "calibrate", bool(self.calibrate))

    def key(self) -> dict:
        """The options as a batch run's fingerprint records them (the key names finished spreads
        were marked with, so that they stay recognised); Nones as a model without a record
        fills them (resolve against the model first, :func:`resolve_priors`)."""
        done = resolve_priors({}, self)
        return {
            "adapt_priors": done.adapt,
            "prior_pseudo_counts": done.pseudo_counts,
            "prior_method": self.method,
            "calibrate": self.calibrate,
        }


def recorded_priors(metadata) -> dict | None:
    """The model's ``prediction_priors`` record (whether and how prediction adapts the class
    priors by default), or None (models trained without it: no adaptation)."""
    record = (metadata or {}).get("prediction_priors")
    return record if isinstance(record, dict) and isinstance(record.get("adapt"), bool) else None


def resolve_priors(metadata, options: PriorOptions) -> PriorOptions:
    """``options`` with what the user left unset (None) taken from the model's record
    (``metadata``: the model's metadata): an explicit ``adapt`` or ``pseudo_counts`` wins;
    without a record, no adaptation and :data:`PRIOR_PSEUDO_COUNTS`."""
    if options.adapt is not None and options.pseudo_counts is not None:
        return options
    record = recorded_priors(metadata) or {"adapt": False}
    adapt = record["adapt"] if options.adapt is None else options.adapt
    pseudo = options.pseudo_counts
    if pseudo is None:
        pseudo = record.get("pseudo_counts") if record["adapt"] else None
    pseudo = PRIOR_PSEUDO_COUNTS if pseudo is None else pseudo
    return replace(options, adapt=adapt, pseudo_counts=pseudo)


def stored_calibration(model) -> dict | None:
    """The calibration that training fitted on its inner-CV out-of-fold predictions
    (``metadata.training.chosen.calibration``: BCTS temperature + bias, the class frequencies
    it refers to, the soft confusion matrix of the calibrated predictions or None); None for
    models saved before it existed or trained without inner CV."""
    training = dict(getattr(model, "metadata", {}).get("training") or {})
    calibration = (training.get("chosen") or {}).get("calibration")
    k = len(model.classes)
    if not isinstance(calibration, dict):
        return None
    try:
        temperature = float(calibration["temperature"])
        bias = np.asarray(calibration["bias"], dtype=float)
        priors = np.asarray(calibration["priors"], dtype=float)
        confusion = np.asarray(calibration.get("confusion", np.nan), dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if bias.shape != (k,) or priors.shape != (k,) or not temperature > 0:
        return None
    ok = confusion.shape == (k, k) and np.isfinite(confusion).all()
    return {
        "temperature": temperature,
        "bias": bias,
        "priors": priors,
        "confusion": confusion if ok else None,
    }


def estimate_priors(
    model, proba: np.ndarray, options: PriorOptions = PriorOptions()
) -> tuple[np.ndarray, np.ndarray]:
    """Label-free class priors of one sample (the rows of ``proba``, the model's posteriors)
    and the posteriors re-weighted to them (``options.adapt`` is not consulted: this is the
    adaptation).

    ``options.method="em"`` (default): MAP-EM (:func:`.priors.adapt_priors`) with
    ``options.pseudo_counts`` Dirichlet pseudo-counts (0 = the maximum-likelihood EM of Saerens
    et al.), starting from :func:`calibration_priors`; ``options.calibrate``: first apply the
    calibration stored at training (BCTS); models without one keep their probabilities as they
    are. ``method="bbse"``: black-box shift estimation from the out-of-fold confusion matrix
    stored at training (calibration always applied; pseudo-counts unused); needs a model trained
    since the calibration is stored. Returns ``(adapted_proba, priors)``."""
    from napari_chromosome_sort.classification import priors as P

    method, calibrate = options.method, options.calibrate
    base = calibration_priors(model)
    stored = stored_calibration(model) if (calibrate or method == "bbse") else None
    if method == "bbse" and (stored is None or stored["confusion"] is None):
        raise ChromosortError(
            "prior method 'bbse' needs the out-of-fold confusion matrix stored at training; "
            "this model has none (retrain it, or use method 'em')"
        )
    if stored is not None:
        proba = P.calibrate(proba, stored["temperature"], stored["bias"])
        base = stored["priors"]
    if method == "bbse":
        priors = P.bbse_priors(proba, stored["confusion"], base)
        return P.reweight(proba, base, priors), priors
    pseudo = PRIOR_PSEUDO_COUNTS if options.pseudo_counts is None else options.pseudo_counts
    return P.adapt_priors(proba, base, pseudo_counts=pseudo)


def predict_crops(
    model,
    images,
    tta: bool = True,
    priors: PriorOptions = PriorOptions(),
    views: int | None = None,
    proba: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per RGB crop: predicted ``class`` and ``p_<class>`` for every class.

    ``priors.adapt``: treat the crops as one sample and re-estimate its class priors without
    labels instead of assuming the training priors (None: as the model records,
    :func:`resolve_priors`); the probabilities are re-weighted to the
    estimated priors, so their mean over the crops is (close to) the estimated class
    distribution (see :func:`estimate_priors` for the other options). ``views``: dihedral views
    averaged (None: the model's ``prediction_views``, or 1 without ``tta``). ``proba``: the
    model's probabilities of these crops, when already computed.
    """
    images = list(images)
    if not images:
        return _probability_table(model, np.zeros((0, len(model.classes))))
    priors = resolve_priors(getattr(model, "metadata", {}), priors)
    if proba is None:
        proba = model.predict_proba(images, tta=tta, views=views)
    if priors.adapt:
        proba, _ = estimate_priors(model, proba, priors)
    return _probability_table(model, proba)


def _separated_class(model, separated_class: str | None) -> str | None:
    if separated_class is None:
        return None
    if separated_class == "auto":
        return next((c for c in model.classes if str(c).lower() == "c"), None)
    if separated_class not in model.classes:
        raise ChromosortError(
            f"separated_class {separated_class!r} is not one of the model's classes {model.classes}"
        )
    return separated_class


def _call_chromatid_pairs(table: pd.DataFrame, objects: pd.DataFrame, cls: str | None) -> None:
    """Objects made of two separate sister chromatids are type C by definition (in place)."""
    table["called_by"] = "model"
    if cls is None or table.empty or "n_parts" not in objects.columns:
        return
    pairs = objects.loc[table["label"], "n_parts"].to_numpy() >= 2
    table.loc[pairs, "class"] = cls
    table.loc[pairs, "called_by"] = "chromatid pair"


PREDICT_STEPS = 3  # segment, crop, classify; Grad-CAM adds one step per crop


def predict_spread(
    model, image: np.ndarray, params=None, gradcam: bool = False, **options
) -> SpreadPrediction:
    """Segment ``image`` (or use ``segmentation``), crop every kept chromosome (others blanked)
    and classify the crops: :func:`predict_spread_steps` run to the end, with the same
    arguments (``options``: its keyword-only ones, ``segmentation``, ``margin``, ``tta``,
    ``priors``, ``separated_class``, ``views``)."""
    return run_to_end(predict_spread_steps(model, image, params, gradcam, **options))


def predict_spread_steps(
    model,
    image: np.ndarray,
    params=None,
    gradcam: bool = False,
    *,
    segmentation=None,
    margin: float | None = None,
    tta: bool = True,
    priors: PriorOptions = PriorOptions(),
    separated_class: str | None = "auto",
    views: int | None = None,
) -> Generator[Progress, None, SpreadPrediction]:
    """The one prediction of a spread, reporting each step (segment, crop, classify) and each
    chunk of Grad-CAM; returns the :class:`SpreadPrediction`. The CLI, batch and the viewer's
    Predict all run it.

    Segment ``image`` (or use ``segmentation``), crop every kept chromosome (others blanked)
    and classify the crops. With ``gradcam`` also the per-object Grad-CAM maps (for the
    predicted class), each on its crop and pasted into a float32 image-shaped map.
    ``priors.adapt``: estimate this spread's class priors from its own kept objects (no labels;
    see :func:`predict_crops`) rather than assume the training class frequencies; None
    (default): as the model records (:func:`resolve_priors`: chosen leave-one-spread-out for a
    model trained beside a reference set on crops of 3 or more spreads; off for others, e.g.
    the bundled model, because on the annotated spreads it helps some and costs others up to
    18 points, docs/validation.md, Whole spreads). The other :class:`PriorOptions`: see
    :func:`estimate_priors`.

    ``separated_class``: the class meaning "sister chromatids apart at the centromere too"
    (type C). An object that segmentation built from two separate sister chromatids
    (``n_parts >= 2``) is that type by definition, so it gets that class whatever the network
    says (column ``called_by`` = ``"chromatid pair"``; the ``p_*`` columns stay the network's).
    ``"auto"`` uses a class named ``C`` (any case) when the model has one; ``None`` turns the
    rule off. ``views``: as for :func:`predict_crops`. The prediction's ``warnings`` say when
    the image is unlike the model's training images (:func:`.image_match.image_warnings`)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 2:
        raise ChromosortError(f"expected a 2-D grey or RGB image, got shape {image.shape}")
    if segmentation is None:
        require_contrast(image)
        yield Progress(0, PREDICT_STEPS, "Segmenting the spread…")
        segmentation = segment_spread(image, params)
    yield Progress(1, PREDICT_STEPS, "Cropping the chromosomes…")
    crops = crop_chromosomes(
        image, segmentation, margin=DEFAULT_MARGIN if margin is None else margin
    )
    total = PREDICT_STEPS + (len(crops) if gradcam else 0)
    yield Progress(2, total, f"Classifying {len(crops)} chromosomes…")
    pixels = [c.pixels for c in crops]
    proba, terms = None, None
    if gradcam:  # torch, imported only when a spread is explained (PriorOptions stays light)
        from napari_chromosome_sort.classification.gradcam import crop_gradcam_steps, paste_maps
        from napari_chromosome_sort.classification.gradcam_fast import explained_proba
    if gradcam and crops:  # Grad-CAM's terms from the same forward as the first view
        proba, terms = explained_proba(model, pixels, tta=tta, views=views)
    table = predict_crops(model, pixels, tta=tta, priors=priors, views=views, proba=proba)
    table = _with_objects(table, crops, segmentation)
    objects = segmentation.objects.set_index("label", drop=False)
    _call_chromatid_pairs(table, objects, _separated_class(model, separated_class))
    result = SpreadPrediction(
        segmentation=segmentation,
        table=table,
        crops=crops,
        warnings=image_warnings(model, image, segmentation.polarity, crops),
    )
    if not gradcam:
        return result
    result.crop_maps, result.gradcam_map = [], np.zeros(image.shape[:2], dtype=np.float32)
    if crops:
        index = {name: i for i, name in enumerate(model.classes)}
        result.crop_maps = yield from relay(
            crop_gradcam_steps(model, crops, [index[c] for c in table["class"]], terms=terms),
            lambda r: Progress(PREDICT_STEPS + r.step, total, f"Explaining: {r.message}"),
        )
        result.gradcam_map = paste_maps(crops, result.crop_maps)
    yield Progress(total, total, f"{len(crops)} chromosomes classified")
    return result


def _with_objects(table: pd.DataFrame, crops, segmentation) -> pd.DataFrame:
    """``table`` (one row per crop) with each object's label and box in front."""
    objects = segmentation.objects.set_index("label", drop=False)
    labels = [c.label for c in crops]
    meta = pd.DataFrame({"label": labels})
    for column in BBOX_COLUMNS:
        meta[column] = objects.loc[labels, column].astype(int).to_numpy() if labels else []
    return pd.concat([meta, table.reset_index(drop=True)], axis=1)
