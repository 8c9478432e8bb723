"""Backbone modules and their pretrained weights.

A backbone is the convolutional trunk of a network named in :mod:`.registry` (one
:class:`BackboneSpec` entry per network), run as an ``nn.Sequential`` so that intermediate
outputs ("taps") can be pooled into a feature vector.

Weights (``build_backbone(name, weights=...)``):

* a path: a local file, either a full ``state_dict`` of the network or a backbone-only one
  (e.g. ``features.*`` of SqueezeNet); ``.pth``/``.pt`` (loaded with ``weights_only=True``)
  or ``.safetensors``;
* ``None`` / ``"imagenet"``: ImageNet weights from, in this order, ``$CHROMOSORT_WEIGHTS_DIR``,
  the torch hub cache (``torch.hub.get_dir()/checkpoints/<file name of the spec's URL>``), or a
  download (progress bar on stderr). Offline with nothing cached raises
  :class:`ChromosortError` naming the file, its URL and how to point the plugin at it;
* ``"random"``: random initialisation, only when asked for explicitly.
"""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from napari_chromosome_sort.classification.models.registry import (
    BACKBONES,
    BackboneSpec,
    get_spec,
    register_backbone,
)
from napari_chromosome_sort.errors import ChromosortError

__all__ = [
    "BACKBONES",
    "FEATURE_SETS",
    "Backbone",
    "BackboneSpec",
    "best_device",
    "build_backbone",
    "feature_columns",
    "get_spec",
    "pool_taps",
    "read_state_dict",
    "register_backbone",
    "resolve_imagenet_weights",
]

WEIGHTS_ENV = "CHROMOSORT_WEIGHTS_DIR"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def best_device():
    """CUDA, then Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------- weight files


def read_state_dict(path: str | os.PathLike) -> dict:
    """Read a tensor dict from ``.safetensors`` or a torch file (``weights_only=True``).

    Raises ChromosortError when the file is missing, unreadable or not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ChromosortError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip, safetensors errors all mean "not a weights file"
        raise ChromosortError(_unreadable_weights_message(path, error)) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ChromosortError(f"{path} does not hold a state_dict (a dict of named tensors)")
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ChromosortError(f"{path} is not a plain state_dict: entry {key!r} is no tensor")
        tensors[str(key)] = value
    # models saved from DataParallel / wrappers
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _unreadable_weights_message(path: Path, error: Exception) -> str:
    """Why a weights file was not read. A pickle holding more than tensors gets its own
    message: torch's own text would suggest ``weights_only=False``, which runs the file's code."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in text:
        return (
            f"{path} holds Python objects besides tensors (a pickled model or training "
            "checkpoint, not a plain state_dict); refused for safety, since loading it could run "
            "code from the file. Save only model.state_dict() (or a .safetensors file) and use that"
        )
    first = text.splitlines()[0] if text else ""
    return (
        f"{path} is not a readable weights file (state_dict .pth or .safetensors): "
        f"{type(error).__name__}: {first[:200]}"
    )


def _hub_checkpoint(spec: BackboneSpec) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.filename


def missing_weights_message(spec: BackboneSpec, reason: str = "") -> str:
    """Error text for ImageNet weights of ``spec`` not available offline: where to get them and
    where to put them."""
    hub = _hub_checkpoint(spec)
    return (
        f"no ImageNet weights for {spec.name} available offline{f' ({reason})' if reason else ''}. "
        f"Download {spec.filename} from {spec.url} and either choose it as the weights file "
        f"(Train widget: Weights file…; command line: --weights PATH), put it in a folder "
        f"named by ${WEIGHTS_ENV}, or copy it to {hub}. "
        f"Use random weights (--weights random) only for an untrained backbone."
    )


def resolve_imagenet_weights(spec: BackboneSpec, download: bool = True) -> tuple[dict, str]:
    """ImageNet state_dict for ``spec``: $CHROMOSORT_WEIGHTS_DIR, hub cache, then download."""
    env_dir = os.environ.get(WEIGHTS_ENV)
    if env_dir:
        candidate = Path(env_dir) / spec.filename
        if candidate.is_file():
            return read_state_dict(candidate), str(candidate)
    cached = _hub_checkpoint(spec)
    if cached.is_file():
        return read_state_dict(cached), str(cached)
    if spec.url is None:
        raise ChromosortError(
            f"{spec.name} has no published ImageNet weights: pass a weights file (--weights PATH, "
            f"or {spec.filename} in a folder named by ${WEIGHTS_ENV}) or use --weights random "
            '(weights="random") for an untrained backbone'
        )
    if not download:
        raise ChromosortError(missing_weights_message(spec, "download disabled"))
    try:
        state = torch.hub.load_state_dict_from_url(
            spec.url, map_location="cpu", progress=True, weights_only=True
        )
    except Exception as error:  # URLError, socket errors, blocked network...
        raise ChromosortError(
            missing_weights_message(spec, f"download failed: {type(error).__name__}")
        ) from None
    return dict(state), spec.url


# --------------------------------------------------------------------------- backbone module


class Backbone(nn.Module):
    """Convolutional trunk of a registered network with pooled multi-layer features."""

    def __init__(self, spec: BackboneSpec, trunk: nn.Sequential, weights_source: str):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.trunk = trunk
        self.weights_source = weights_source

    @property
    def taps(self) -> tuple[int, ...]:
        """Trunk indices whose outputs are pooled into features."""
        return self.spec.taps

    @property
    def cam_layer(self) -> nn.Module:
        """The trunk layer of classic (single-layer) Grad-CAM."""
        return self.trunk[self.spec.cam_index]

    @property
    def feature_dim(self) -> int:
        """Length of the pooled feature vector ([avg, max] of every tap)."""
        return 2 * sum(self.spec.channels)

    def forward_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at the tap layers (the trunk stops after the last tap)."""
        outputs = []
        last = max(self.spec.taps)
        for index, layer in enumerate(self.trunk):
            x = layer(x)
            if index in self.spec.taps:
                outputs.append(x)
            if index >= last:
                break
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features: [avg, max] of every tap, concatenated (N, D)."""
        return pool_taps(self.forward_taps(x))

    def freeze(self, trainable_blocks: int = 0) -> None:
        """Freeze the trunk except its last ``trainable_blocks`` blocks."""
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        if trainable_blocks > 0:
            for index in self.spec.blocks[-trainable_blocks:]:
                for p in self.trunk[index].parameters():
                    p.requires_grad_(True)


FEATURE_SETS = {
    "all": "average and max pooling of every tap",
    "all_avg": "average pooling of every tap",
    "last": "average and max pooling of the last tap",
    "last_avg": "average pooling of the last tap (the usual global-average-pooled feature)",
}


def feature_columns(backbone: str, feature_set: str) -> np.ndarray:
    """Column indices of ``feature_set`` in the pooled feature vector of ``pool_taps``
    (laid out as [avg, max] per tap, taps in order)."""
    spec = get_spec(backbone)
    if feature_set not in FEATURE_SETS:
        raise ChromosortError(
            f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}"
        )
    columns, offset = [], 0
    last = len(spec.channels) - 1
    for index, c in enumerate(spec.channels):
        if feature_set.startswith("all") or index == last:
            columns.append(np.arange(offset, offset + c))  # average pooling
            if not feature_set.endswith("_avg"):
                columns.append(np.arange(offset + c, offset + 2 * c))  # max pooling
        offset += 2 * c
    return np.concatenate(columns)


def pool_taps(maps):
    """Global [avg, max] pooling of every feature map, concatenated: (N, D)."""
    parts = []
    for m in maps:
        parts.append(m.mean(dim=(2, 3)))
        parts.append(m.amax(dim=(2, 3)))
    return torch.cat(parts, dim=1)


def _trunk(spec: BackboneSpec, model: nn.Module) -> nn.Sequential:
    """The network's trunk attributes as one ``nn.Sequential`` (see :class:`BackboneSpec`)."""
    layers = [getattr(model, attribute) for attribute in spec.trunk]
    if len(layers) == 1 and isinstance(layers[0], nn.Sequential):
        return layers[0]
    return nn.Sequential(*layers)


def shape_mismatch(state: dict, own: dict) -> str | None:
    """``"<key> has shape (..), expected (..)"`` for the first tensor of ``state`` that is absent
    from or shaped differently in ``own`` (a module's state_dict); None when all fit."""
    for key, value in state.items():
        if key not in own:
            return f"{key} is not a tensor of this model"
        if tuple(value.shape) != tuple(own[key].shape):
            return f"{key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
    return None


def _load_into_trunk(spec: BackboneSpec, model, state: dict, source: str) -> None:
    """Load a full or backbone-only state_dict into ``model``'s trunk; refuse foreign files."""
    own = model.state_dict()
    trunk_keys = [k for k in own if k.startswith(spec.trunk_prefix)]
    usable = {k: v for k, v in state.items() if k in own and k.startswith(spec.trunk_prefix)}
    missing = [k for k in trunk_keys if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        found = sum(1 for k in state if k.startswith(spec.trunk_prefix))
        raise ChromosortError(
            f"{source} is not a {spec.name} weights file: {len(missing)} of {len(trunk_keys)} "
            f"backbone tensors missing (e.g. {missing[0]!r}; the file has {found} backbone keys)"
        )
    mismatch = shape_mismatch(usable, own)
    if mismatch:
        raise ChromosortError(f"{source} does not fit {spec.name}: {mismatch}")
    model.load_state_dict(usable, strict=False)


def build_backbone(name: str = "squeezenet1_1", weights=None, download: bool = True) -> Backbone:
    """Build backbone ``name`` with ``weights`` = path | None | "imagenet" | "random"."""
    spec = get_spec(name)
    model = spec.network()
    if isinstance(weights, str) and weights == "random":
        # Each random backbone is different: a unique source keeps cached features apart.
        source = f"random:{uuid.uuid4().hex[:12]}"
    elif weights is None or (isinstance(weights, str) and weights == "imagenet"):
        state, source = resolve_imagenet_weights(spec, download=download)
        _load_into_trunk(spec, model, state, source)
    else:
        path = Path(weights)
        state = read_state_dict(path)
        source = str(path)
        _load_into_trunk(spec, model, state, source)
    backbone = Backbone(spec, _trunk(spec, model), source)
    backbone.eval()
    backbone.freeze(0)
    return backbone
