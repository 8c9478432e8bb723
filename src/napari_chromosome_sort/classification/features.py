"""Preprocessing of crops and cached frozen-backbone features over the 8 dihedral views.

Every crop is preprocessed ONCE per view; the frozen backbone's pooled features are kept in
memory (and optionally on disk, keyed by the image bytes' hash + backbone + weights +
preprocessing), so a head trains on cached features in seconds and cross-validation folds
share one feature extraction.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import ChromosortError
from ..progress import Progress

N_VIEWS = 8  # dihedral views: rotations 0/90/180/270, then the same mirrored
# views averaged at prediction unless a model records another number: the four rotations are as
# accurate as all eight (docs/performance.md) at half the cost
PREDICT_VIEWS = 4


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB crop becomes a network input; stored in every model's metadata.

    appearance: "canonical" (``appearance.canonical_appearance`` first) or "plain".
    geometry: "stretch" (resize to size x size, the seed paper's way), "pad" (pad to a square
        with ``fill`` then resize: keeps the aspect ratio) or "canvas" (keep the crop's pixel
        scale, ``scale`` x native, centred on a size x size canvas; shrunk only if too large:
        keeps the size information).
    """

    size: int = 224
    appearance: str = "canonical"
    geometry: str = "pad"
    scale: float = 1.0
    fill: int = 255
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        from .model_schema import check_preprocessing

        check_preprocessing(self.to_dict())  # bounds: e.g. no input size that exhausts memory

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def as_rgb_uint8(image) -> np.ndarray:
    """Any grey/RGB(A) array or image path -> uint8 HxWx3."""
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        try:
            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB"))
        except Exception as error:
            raise ChromosortError(f"cannot read image {image}: {error}") from None
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ChromosortError(f"expected an RGB crop (HxWx3), got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        a = arr.astype(np.float32)
        if a.max() <= 1.0 and np.issubdtype(arr.dtype, np.floating):
            a = a * 255.0
        elif a.max() > 255:
            a = a / max(float(a.max()), 1.0) * 255.0
        arr = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))


def prepare_image(image, prep: Preprocessing) -> np.ndarray:
    """One RGB crop -> float32 3xSxS normalised network input (no view applied)."""
    arr = as_rgb_uint8(image)
    if prep.appearance == "canonical":
        from .appearance import canonical_appearance

        arr = as_rgb_uint8(canonical_appearance(arr))
    s = prep.size
    h, w = arr.shape[:2]
    if prep.geometry == "stretch":
        out = _resize(arr, s, s)
    elif prep.geometry == "pad":
        side = max(h, w)
        canvas = np.full((side, side, 3), prep.fill, np.uint8)
        y0, x0 = (side - h) // 2, (side - w) // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = arr
        out = _resize(canvas, s, s)
    elif prep.geometry == "canvas":
        f = prep.scale
        if max(h, w) * f > s:
            f = s / max(h, w)
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
        small = _resize(arr, nh, nw) if (nh, nw) != (h, w) else arr
        out = np.full((s, s, 3), prep.fill, np.uint8)
        y0, x0 = (s - nh) // 2, (s - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = small
    else:
        raise ChromosortError(f"unknown preprocessing geometry {prep.geometry!r}")
    x = out.astype(np.float32) / 255.0
    x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(images: Sequence, prep: Preprocessing):
    """List of RGB crops -> torch float tensor (N, 3, S, S)."""
    if len(images) == 0:
        return torch.zeros((0, 3, prep.size, prep.size))
    return torch.from_numpy(np.stack([prepare_image(im, prep) for im in images]))


def dihedral(x, view: int):
    """View ``view`` (0..7) of a batch (N, C, H, W): rotation by 90*(view % 4), flipped if >= 4."""
    if view >= 4:
        x = torch.flip(x, dims=(3,))
    k = view % 4
    return torch.rot90(x, k, dims=(2, 3)) if k else x


# --------------------------------------------------------------------------- feature cache


def image_key(image) -> str:
    """Content hash of a crop (file bytes for paths, pixels + shape for arrays)."""
    h = hashlib.sha1()
    if isinstance(image, (str, os.PathLike)):
        h.update(Path(image).read_bytes())
    else:
        arr = np.ascontiguousarray(np.asarray(image))
        h.update(str((arr.shape, arr.dtype.str)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def appearance_version() -> str:
    """Hash of ``appearance.canonical_appearance``'s module source (cache invalidation)."""
    import inspect

    from . import appearance

    try:
        source = inspect.getsource(appearance)
    except (OSError, TypeError):
        source = getattr(appearance, "__version__", "unknown")
    return hashlib.sha1(source.encode()).hexdigest()[:12]


def _setting_key(backbone, prep: Preprocessing, views: int) -> str:
    blob = json.dumps(
        {
            "appearance_version": appearance_version() if prep.appearance == "canonical" else "",
            "backbone": backbone.name,
            "weights": backbone.weights_source,
            "taps": list(backbone.taps),
            "prep": prep.to_dict(),
            "views": views,
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


_MEMORY: dict[tuple[str, str], np.ndarray] = {}


def extract_features(
    backbone,
    images: Sequence,
    prep: Preprocessing | None = None,
    views: int = N_VIEWS,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    device=None,
) -> Generator[Progress, None, np.ndarray]:
    """Pooled frozen features of every crop in every view; returns them, (N, views, D) float32.

    Cached in memory for the process and, with ``cache_dir``, on disk (one .npy per crop).
    """
    prep = prep or Preprocessing()
    setting = _setting_key(backbone, prep, views)
    keys = [image_key(im) for im in images]
    out: list[np.ndarray | None] = [None] * len(images)
    cache = Path(cache_dir) / setting if cache_dir else None
    todo = []
    for i, key in enumerate(keys):
        hit = _MEMORY.get((setting, key))
        if hit is None and cache is not None and (cache / f"{key}.npy").is_file():
            try:
                hit = np.load(cache / f"{key}.npy")
                _MEMORY[(setting, key)] = hit
            except (OSError, ValueError):
                hit = None
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit
    total = len(todo)
    yield Progress(0, total, f"features: {total} crops to compute, {len(images) - total} cached")
    if device is None:
        device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    if cache is not None and total:
        cache.mkdir(parents=True, exist_ok=True)
    forward = _frozen_forward(backbone, prep, total * views, device)
    with torch.no_grad():
        for start in range(0, total, batch_size):
            idx = todo[start : start + batch_size]
            x = preprocess([images[i] for i in idx], prep).to(device)
            per_view = [forward(dihedral(x, v)) for v in range(views)]
            feats = np.stack(per_view, axis=1).astype(np.float32)  # (b, views, D)
            for j, i in enumerate(idx):
                out[i] = feats[j]
                _MEMORY[(setting, keys[i])] = feats[j]
                if cache is not None:
                    with atomic_path(cache / f"{keys[i]}.npy") as tmp:
                        np.save(tmp, feats[j])
            done = min(start + batch_size, total)
            yield Progress(done, total, f"features {done}/{total}")
    backbone.train(was_training)
    return np.stack(out) if out else np.zeros((0, views, backbone.feature_dim), np.float32)


def _frozen_forward(backbone, prep: Preprocessing, forwards: int, device):
    """Tensor batch -> pooled features (numpy float32): ONNX Runtime on CPU where available and
    worth it (:mod:`.fast_inference`), else the torch backbone."""
    from .fast_inference import onnx_runner

    runner = None
    if device is None or str(device) == "cpu":
        runner = onnx_runner(backbone, prep.size, "pooled-taps", forwards)
    if runner is not None:
        return lambda x: runner(x.numpy())
    return lambda x: backbone(x).float().cpu().numpy()


def clear_memory_cache() -> None:
    _MEMORY.clear()
