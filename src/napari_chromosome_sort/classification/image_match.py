"""Is a spread like the images a model was trained on? What a model records of its training
crops (stain, polarity, crop size) and the warnings Predict gives when a spread differs.

A model file records ``training_images`` in its metadata (:func:`record_training_images`, called
by training). A model without the record (the bundled one, imported published models) is read
as trained on Giemsa bright-field crops, dark chromosomes on a light background: the crops of
Ikemoto et al. 2022 that the bundled model learnt from (``data/wt_squeezenet1_1.LICENSE.txt``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from napari_chromosome_sort.crops import crop_source_polarity
from napari_chromosome_sort.files.io import detect_polarity, read_image

RECORD_KEY = "training_images"
STAINS = {"dark_on_light": "Giemsa", "bright_on_dark": "DAPI"}
"""The stain a polarity stands for when training was not told the stain."""
DEFAULT_RECORD = {"stain": "Giemsa", "polarity": "dark_on_light"}
"""A model without a record: the bundled model's training crops (Giemsa bright-field)."""
POLARITY_WORDS = {
    "dark_on_light": "dark chromosomes on a light background (bright-field, e.g. Giemsa)",
    "bright_on_dark": "bright chromosomes on a dark background (fluorescence, e.g. DAPI)",
}
CROP_SIZE_FACTOR = 2.0
"""A spread whose median crop side is more than this factor from the training crops' warns."""
POLARITY_SAMPLE = 64  # crops whose polarity is read when recording (the majority is kept)


def _crop_side(image) -> int:
    shape = np.shape(image)
    return int(max(shape[:2]))


def describe_training_images(images: Iterable, stain: str | None = None) -> dict:
    """The record of training crops ``images`` (arrays or image files; up to
    :data:`POLARITY_SAMPLE` of them, evenly spaced, are read): the polarity most of their
    spreads have, their median side in pixels and the ``stain`` (from the polarity when not
    given). A crop file the plugin cut says its spread's polarity (its pixels are always dark
    on light, :func:`.crops.crop_source_polarity`); any other crop is judged by its pixels."""
    images = list(images)
    if not images:
        return {}
    step = max(1, len(images) // POLARITY_SAMPLE)
    sample, votes = [], []
    for image in images[::step]:
        if isinstance(image, (str, Path)):
            sample.append(read_image(image))
            votes.append(crop_source_polarity(image) or detect_polarity(sample[-1]))
        else:
            sample.append(np.asarray(image))
            votes.append(detect_polarity(sample[-1]))
    polarity = max(set(votes), key=votes.count)
    return {
        "stain": stain or STAINS[polarity],
        "polarity": polarity,
        "crop_size": int(np.median([_crop_side(image) for image in sample])),
    }


def record_training_images(
    model, images: Sequence, reference=None, stain: str | None = None
) -> dict:
    """Record in ``model.metadata`` (saved with the model file) what its training crops
    ``images`` (arrays or files) were like; ``reference``: which crops come from a reference
    set (left out: the user's own crops say what the model is for). Returns the record."""
    if reference is not None:
        images = [image for image, ref in zip(images, reference, strict=True) if not ref]
    record = describe_training_images(images, stain)
    if record:
        model.metadata[RECORD_KEY] = record
    return record


def training_images_of(model) -> dict:
    """The model's record of its training images; the bundled model's kind where it has none
    (polarity and stain; the crop size stays unknown)."""
    record = dict(getattr(model, "metadata", {}).get(RECORD_KEY) or {})
    if not record.get("polarity"):
        record.update(DEFAULT_RECORD)
    record.setdefault("stain", STAINS[record["polarity"]])
    return record


def image_warnings(
    model, image, polarity: str | None = None, crops=(), subject: str = "this image has"
) -> list[str]:
    """Warnings that ``image`` is unlike the model's training images: another polarity
    (``polarity``: the image's, detected when None), or crops of another size (when the model
    records its crop size). Empty when the image is like them. ``subject``: how the polarity
    warning starts (crops: ``"these crops were cut from spreads with"``)."""
    record = training_images_of(model)
    polarity = polarity or detect_polarity(image)
    warnings = []
    if polarity != record["polarity"]:
        warnings.append(
            f"{subject} {POLARITY_WORDS.get(polarity, polarity)}, but the model was trained "
            f"on {record['stain']} crops with {POLARITY_WORDS[record['polarity']]}: its calls "
            "may be wrong; train a model on crops of this kind of image"
        )
    trained = record.get("crop_size")
    sides = [_crop_side(c.pixels) for c in crops]
    if trained and sides:
        side = float(np.median(sides))
        if not trained / CROP_SIZE_FACTOR <= side <= trained * CROP_SIZE_FACTOR:
            warnings.append(
                f"this spread's chromosome crops are {side:.0f} px across, the model's training "
                f"crops {trained} px: more than {CROP_SIZE_FACTOR:g}x apart, so the calls may be "
                "wrong (image at another magnification?)"
            )
    return warnings
