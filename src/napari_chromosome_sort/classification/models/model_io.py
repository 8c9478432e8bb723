"""Model files: ONE self-describing safetensors file per classifier.

The file holds the module's tensors plus, in the safetensors ``__metadata__``, the key
``"napari-chromosome-sort"`` with JSON: class names in order, backbone, input size,
preprocessing, head layout, training data summary, metrics, package version. Nothing is ever
unpickled: imported ``.pth`` files are read with ``torch.load(weights_only=True)``.
Saving is atomic (temporary file + ``os.replace``): a failed save never leaves a half-written
model, nor clobbers the previous one; temporary files that a killed save left beside the model
are removed by the next save. Every file read is checked against :mod:`.model_schema` before
anything is built from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from napari_chromosome_sort import __version__
from napari_chromosome_sort.classification.features import Preprocessing
from napari_chromosome_sort.classification.models.backbones import (
    get_spec,
    read_state_dict,
    shape_mismatch,
)
from napari_chromosome_sort.classification.models.classifier import build_classifier
from napari_chromosome_sort.classification.models.model_schema import (
    FORMAT_VERSION,
    MAX_METADATA_CHARS,
    check_architecture,
    check_metadata,
    check_tensors,
)
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic
from napari_chromosome_sort.files.safety import load_json

FORMAT_KEY = "napari-chromosome-sort"
STALE_TEMP_SECONDS = 60
"""A temporary save file untouched this long is a leftover of a killed save (not one running)."""


def _metadata_blob(model) -> dict[str, str]:
    meta = dict(model.metadata)
    meta.update(model.architecture())
    meta.setdefault("package_version", __version__)
    meta["format_version"] = FORMAT_VERSION
    try:
        text = json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as error:
        raise ChromosortError(f"model metadata is not JSON-serialisable: {error}") from None
    try:
        check_metadata(json.loads(text))
    except ChromosortError as error:
        raise ChromosortError(f"cannot save this model: {error}") from None
    return {FORMAT_KEY: text, "format": "napari-chromosome-sort model"}


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def save_model(model, path) -> Path:
    """Write ``model`` to ``path`` (safetensors + JSON metadata), atomically."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata=_metadata_blob(model))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ChromosortError(f"cannot save model: folder {folder} does not exist")
    if path.is_dir():
        raise ChromosortError(f"cannot save model: {path} is a folder; give a file name")
    remove_stale_temps(path)
    write_bytes_atomic(path, blob)
    return path


def remove_stale_temps(path: Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp<suffix>``) that killed saves of ``path``
    left beside it, when untouched for ``older_than`` seconds (a save still running is
    younger). Returns the deleted paths."""
    removed = []
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        try:
            if tmp.is_file() and not tmp.is_symlink() and now - tmp.stat().st_mtime >= older_than:
                os.unlink(tmp)
                removed.append(tmp)
        except OSError:
            continue  # gone already, or not ours to delete
    return removed


def read_metadata(path) -> dict:
    """The JSON metadata of a model file (ChromosortError if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise ChromosortError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as error:
        hint = ""
        if path.suffix in (".pth", ".pt", ".pkl"):
            hint = " (a plain PyTorch state_dict? use `chromosort import-model` first)"
        raise ChromosortError(
            f"{path} is not a readable model file: not a complete safetensors file{hint} "
            f"({type(error).__name__})"
        ) from None
    if FORMAT_KEY not in raw:
        raise ChromosortError(
            f"{path} is a safetensors file but not a napari-chromosome-sort model "
            f"(no {FORMAT_KEY!r} metadata; made by another tool?)"
        )
    meta = _parse_metadata(raw[FORMAT_KEY], path)
    try:
        return check_metadata(meta)
    except ChromosortError as error:
        raise ChromosortError(f"{path} is refused: {error}") from None


def _parse_metadata(text: str, path: Path) -> dict:
    """The metadata JSON of ``path`` (size-limited; deep nesting is corrupt, not a crash)."""
    if len(text) > MAX_METADATA_CHARS:
        raise ChromosortError(
            f"{path}: model metadata is {len(text)} characters long "
            f"(at most {MAX_METADATA_CHARS}); refused"
        )

    try:
        meta = load_json(text, "JSON", finite=False)
    except ChromosortError as error:
        raise ChromosortError(f"{path}: model metadata is corrupt ({error})") from None
    if not isinstance(meta, dict):
        raise ChromosortError(f"{path}: model metadata is corrupt (not a JSON object)")
    return meta


def load_model(path):
    """Load a model saved by :func:`save_model` (no network, nothing unpickled)."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as error:
        raise ChromosortError(f"{path} is corrupt: tensors unreadable ({error})") from None
    model = build_classifier(meta, weights="random", metadata=meta)
    try:
        check_tensors(tensors, model.state_dict())
    except ChromosortError as error:
        raise ChromosortError(f"{path} is refused: {error}") from None
    model.load_state_dict(tensors, strict=True)
    model.backbone.weights_source = meta.get("weights_source", model.backbone.weights_source)
    model.eval()
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_state_dict(
    path,
    classes: Sequence[str],
    backbone: str = "squeezenet1_1",
    preprocessing=None,
):
    """Wrap a plain ``state_dict`` of a registered network (e.g. Ikemoto et al. (2022)'s published
    model): its trunk and its own classifier, laid out as the backbone's ``BackboneSpec`` says
    (``trunk``, ``head_kind``, ``head_keys``).

    Default preprocessing is the original one: plain RGB (no canonical appearance) stretched to
    224 x 224, ImageNet mean/std; pass a ``features.Preprocessing`` to override.
    """
    path = Path(path)
    classes = [str(c).strip() for c in classes if str(c).strip()]
    if len(classes) < 2:
        raise ChromosortError("import needs at least 2 class names, in the model's output order")
    spec = get_spec(backbone)
    state = read_state_dict(path)
    prep = preprocessing or Preprocessing(size=224, appearance="plain", geometry="stretch")
    for key in spec.head_keys:
        if key not in state:
            raise ChromosortError(f"{path} is not a full {backbone} model: {key!r} missing")
    n_out = int(state[next(iter(spec.head_keys))].shape[0])
    if n_out != len(classes):
        raise ChromosortError(
            f"{path} has {n_out} outputs but {len(classes)} class names were given "
            f"({', '.join(classes)})"
        )
    arch = {
        "classes": classes,
        "backbone": backbone,
        "input_size": prep.size,
        "preprocessing": prep.to_dict(),
        "head": {"kind": spec.head_kind, "in_dim": spec.channels[-1]},
    }
    check_architecture(arch)
    model = build_classifier(arch, weights="random")
    own = model.state_dict()
    new_state = {}
    for key, value in state.items():
        if key in spec.head_keys:
            new_state[f"head.{spec.head_keys[key]}"] = value
        elif (trunk_key := spec.trunk_key(key)) is not None:
            new_state[f"backbone.trunk.{trunk_key}"] = value
    missing = [k for k in own if k not in new_state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ChromosortError(
            f"{path} is not a complete {backbone} model: {len(missing)} tensors missing "
            f"(e.g. {missing[0]})"
        )
    mismatch = shape_mismatch(new_state, own)
    if mismatch:
        raise ChromosortError(f"{path} does not fit {backbone}: {mismatch}")
    with torch.no_grad():
        model.load_state_dict(new_state, strict=False)
    model.backbone.weights_source = str(path)
    model.metadata.update(
        package_version=__version__,
        weights_source=str(path),
        imported_from={"file": path.name, "sha256": _sha256(path)},
        training={"note": f"imported plain torchvision state_dict {path.name}"},
        metrics={},
    )
    model.eval()
    return model
