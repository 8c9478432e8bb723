"""The one schema of a model file's metadata and tensors, with bounds.

Every loader (:mod:`.model_io`) checks a file against it before building anything, and every
save checks the model against it too, so a model we write is one we can read. A crafted or
damaged file is refused with one :class:`ChromosortError` line naming the field; nothing in the
metadata can make the loader allocate without bound, build a mismatched module, or write a file.

Torch-free at import (tensor checks import it lazily): the backbones it checks against come
from :mod:`.registry`.
"""

from __future__ import annotations

import math

from napari_chromosome_sort.classification.models.registry import HEAD_LAYOUTS, get_spec
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.safety import check_names

FORMAT_VERSION = 1
MAX_CLASSES = 256
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
"""Network input side in pixels (the default is 224); larger inputs would exhaust memory."""
MAX_HIDDEN = 4096
MAX_SCALE = 16.0
MAX_METADATA_CHARS = 16_000_000
APPEARANCES = ("canonical", "plain")
GEOMETRIES = ("stretch", "pad", "canvas")
HEAD_KINDS = ("pooled", *HEAD_LAYOUTS)
OPTIONAL_DICTS = (
    "training",
    "metrics",
    "imported_from",
    "training_images",
    "prediction_priors",
)
POLARITIES = ("dark_on_light", "bright_on_dark")
MAX_CROP_SIDE = 100_000
MAX_STAIN_CHARS = 40
OPTIONAL_TEXTS = ("task", "weights_source", "package_version")


def _int(value, what: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChromosortError(f"{what} must be a whole number, got {value!r:.40}")
    if not low <= value <= high:
        raise ChromosortError(f"{what} {value} is outside the allowed range {low}..{high}")
    return value


def _float(value, what: str, low: float, high: float, high_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``[low, high)`` when ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChromosortError(f"{what} must be a number, got {value!r:.40}")
    value = float(value)
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or value < low or above:
        bracket = ")" if high_open else "]"
        raise ChromosortError(
            f"{what} {value} is outside the allowed range [{low}, {high}{bracket}"
        )
    return value


def _dict(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ChromosortError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _choice(value, what: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ChromosortError(f"{what} {value!r:.40} is not one of {', '.join(choices)}")
    return value


def check_format_version(meta: dict) -> int:
    """The format version: a whole number >= 1 and not newer than this package reads."""
    version = meta.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ChromosortError(f"malformed format version {version!r:.40} (expected 1, 2, ...)")
    if version > FORMAT_VERSION:
        raise ChromosortError(
            f"written by a newer napari-chromosome-sort (format {version}, this version reads "
            f"{FORMAT_VERSION}); update the plugin"
        )
    return version


def check_classes(classes) -> list[str]:
    """2..MAX_CLASSES unique, safe class names (see :func:`.safety.check_name`)."""
    if not isinstance(classes, list):
        raise ChromosortError(f"classes must be a list of names, got {type(classes).__name__}")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise ChromosortError(
            f"a model needs 2..{MAX_CLASSES} classes, this one has {len(classes)}"
        )
    return check_names(classes, "class name")


def check_preprocessing(prep, input_size: int | None = None) -> dict:
    """The preprocessing record: size within bounds (and equal to ``input_size``), known
    appearance and geometry, finite scale/fill, 3 finite means and 3 positive stds."""
    prep = _dict(prep, "preprocessing")
    size = _int(prep.get("size", 224), "input size", MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    if input_size is not None and size != input_size:
        raise ChromosortError(f"preprocessing size {size} differs from input size {input_size}")
    _choice(prep.get("appearance", "canonical"), "preprocessing appearance", APPEARANCES)
    _choice(prep.get("geometry", "pad"), "preprocessing geometry", GEOMETRIES)
    _float(prep.get("scale", 1.0), "preprocessing scale", 1e-3, MAX_SCALE)
    _int(prep.get("fill", 255), "preprocessing fill", 0, 255)
    for key, low in (("mean", -1e3), ("std", 1e-6)):
        values = prep.get(key, [0.5, 0.5, 0.5])
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            raise ChromosortError(f"preprocessing {key} must be 3 numbers (R, G, B)")
        for v in values:
            _float(v, f"preprocessing {key}", low, 1e3)
    return prep


def check_head(head, backbone: str) -> dict:
    """The head record: known kind, and an input width that fits the backbone."""
    head = _dict(head, "head")
    kind = _choice(head.get("kind"), "head kind", HEAD_KINDS)
    spec = get_spec(backbone)
    expected = {"pooled": 2 * sum(spec.channels), "avgpool_fc": spec.channels[-1]}.get(kind)
    if expected is not None:
        in_dim = _int(head.get("in_dim"), "head input width", 1, 1_000_000)
        if in_dim != expected:
            raise ChromosortError(
                f"head input width {in_dim} does not fit the {backbone} backbone ({expected})"
            )
    if kind != "pooled" and kind != spec.head_kind:
        raise ChromosortError(
            f"a {kind} head does not fit the {backbone} backbone (its own classifier is "
            f"{spec.head_kind})"
        )
    if kind == "pooled":
        _int(head.get("hidden", 0), "head hidden width", 0, MAX_HIDDEN)
        _float(head.get("dropout", 0.0), "head dropout", 0.0, 1.0, high_open=True)
        taps = head.get("taps", list(spec.taps))
        if taps != list(spec.taps):
            raise ChromosortError(
                f"model was made with feature taps {taps!r:.60}, this version of {backbone} "
                f"uses {list(spec.taps)}"
            )
    return head


def check_architecture(meta) -> dict:
    """Everything :func:`.classifier.build_classifier` reads, within bounds."""
    meta = _dict(meta, "model metadata")
    missing = [k for k in ("classes", "backbone", "preprocessing", "head") if k not in meta]
    if missing:
        raise ChromosortError(f"model description lacks {', '.join(missing)}")
    check_classes(meta["classes"])
    backbone = meta["backbone"]
    if not isinstance(backbone, str):
        raise ChromosortError(f"backbone must be a name, got {backbone!r:.40}")
    size = meta.get("input_size")
    if size is not None:
        _int(size, "input size", MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    check_preprocessing(meta["preprocessing"], size)
    check_head(meta["head"], backbone)
    return meta


def check_metadata(meta) -> dict:
    """The whole metadata record: format version, architecture, optional fields' types."""
    meta = _dict(meta, "model metadata")
    check_format_version(meta)
    check_architecture(meta)
    for key in OPTIONAL_DICTS:
        if meta.get(key) is not None:
            _dict(meta[key], key)
    for key in OPTIONAL_TEXTS:
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise ChromosortError(f"{key} must be text, got {type(meta[key]).__name__}")
    if meta.get("training") is not None:
        check_training(meta["training"], len(meta["classes"]))
    if meta.get("training_images") is not None:
        check_training_images(meta["training_images"])
    if meta.get("prediction_priors") is not None:
        check_prediction_priors(meta["prediction_priors"])
    return meta


MAX_PSEUDO_COUNTS = 1e9


def check_prediction_priors(record) -> dict:
    """What prediction does with the class priors unless told otherwise (chosen at training,
    :mod:`..training.spread_priors`): ``adapt`` true or false, ``pseudo_counts`` a number
    >= 0 when it adapts. A model file without the record keeps its priors."""
    record = _dict(record, "prediction priors")
    if not isinstance(record.get("adapt"), bool):
        raise ChromosortError("prediction priors adapt must be true or false")
    if record["adapt"]:
        what = "prediction priors pseudo-counts"
        _float(record.get("pseudo_counts"), what, 0.0, MAX_PSEUDO_COUNTS)
    return record


def check_training_images(record) -> dict:
    """What a model records of its training images (``training_images``): ``polarity`` one of
    :data:`POLARITIES`, ``stain`` a short text, ``crop_size`` (median crop side, px) a whole
    number; each optional (a model file without one is read as the bundled model's kind)."""
    record = _dict(record, "training images")
    if record.get("polarity") is not None:
        _choice(record["polarity"], "training images polarity", POLARITIES)
    stain = record.get("stain")
    if stain is not None and (not isinstance(stain, str) or len(stain) > MAX_STAIN_CHARS):
        raise ChromosortError(
            f"training images stain must be text of at most {MAX_STAIN_CHARS} characters"
        )
    if record.get("crop_size") is not None:
        _int(record["crop_size"], "training images crop size", 1, MAX_CROP_SIDE)
    return record


MAX_COUNT = 10**9
MAX_HEAD_VALUE = 1e6  # a head weight beyond this overflows the class probabilities


def _numbers(values, what: str, length: int, low: float, high: float) -> list[float]:
    """``values`` as ``length`` finite numbers in ``[low, high]``."""
    if not isinstance(values, list) or len(values) != length:
        raise ChromosortError(f"{what} must be {length} numbers")
    return [_float(v, what, low, high) for v in values]


def check_training(training, k: int) -> dict:
    """What prediction reads from the training record: the config a dict, the class counts
    whole numbers, the stored calibration (temperature, bias, priors, confusion) finite and of
    the right lengths, so that ``--adapt-priors``/``--calibrate`` get a distribution."""
    training = _dict(training, "training")
    if training.get("config") is not None:
        config = _dict(training["config"], "training config")
        if not isinstance(config.get("class_balance", True), bool):
            raise ChromosortError("training config class_balance must be true or false")
    counts = training.get("counts")
    if counts is not None:
        for name, n in _dict(counts, "training counts").items():
            _int(n, f"training count of {str(name)[:40]!r}", 0, MAX_COUNT)
    chosen = training.get("chosen")
    calibration = _dict(chosen, "training chosen").get("calibration") if chosen else None
    if calibration is not None:
        calibration = _dict(calibration, "calibration")
        _float(calibration.get("temperature"), "calibration temperature", 1e-12, 1e12)
        _numbers(calibration.get("bias"), "calibration bias", k, -1e6, 1e6)
        priors = _numbers(calibration.get("priors"), "calibration priors", k, 0.0, 1.0)
        if sum(priors) <= 0:
            raise ChromosortError("calibration priors sum to 0; they give no distribution")
        confusion = calibration.get("confusion")
        if confusion is not None:
            if not isinstance(confusion, list) or len(confusion) != k:
                raise ChromosortError(f"calibration confusion must be {k} rows")
            for row in confusion:
                _numbers(row, "calibration confusion", k, 0.0, 1.0)
    return training


def check_tensors(tensors: dict, own: dict) -> None:
    """Tensors read from a file against the module's own: same names, shapes and dtypes, and
    every floating-point value finite."""
    import torch

    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ChromosortError(
            f"tensors do not match the model's description: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ChromosortError(
                f"tensor {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
            )
        if value.dtype != own[key].dtype:
            raise ChromosortError(f"tensor {key} holds {value.dtype}, expected {own[key].dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ChromosortError(f"tensor {key} holds NaN or infinite values")
        if key.startswith("head.") and value.is_floating_point():
            if key.endswith("sigma") and not bool((value > 0).all()):
                raise ChromosortError(
                    f"tensor {key} holds zero or negative scales; the head gives no distribution"
                )
            if value.numel() and float(value.abs().max()) > MAX_HEAD_VALUE:
                raise ChromosortError(
                    f"tensor {key} holds values beyond {MAX_HEAD_VALUE:g}; the head gives no "
                    "distribution"
                )
