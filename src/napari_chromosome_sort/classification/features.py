"""Preprocessing of crops and cached frozen-backbone features over the 8 dihedral views.

Every crop is preprocessed ONCE per view; the frozen backbone's pooled features are kept in
memory and on disk (training uses the user cache's ``features/`` folder by default; keyed by
the image bytes' hash + backbone + weights + preprocessing, bounded in size, safe to delete),
so a head trains on cached features in seconds, cross-validation folds share one feature
extraction, and training again on the same crops computes no features.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from napari_chromosome_sort.classification import appearance
from napari_chromosome_sort.classification.appearance import (
    CORE_RGB,
    canonical_appearance,
    canonical_contrast,
)
from napari_chromosome_sort.classification.models.fast_inference import onnx_runner, user_cache_dir
from napari_chromosome_sort.classification.models.model_schema import check_preprocessing
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import atomic_path
from napari_chromosome_sort.files.safety import (
    MARKER,
    claim_folder,
    is_link,
    mark_owned,
    no_links,
    owns,
)
from napari_chromosome_sort.progress import Progress

N_VIEWS = 8  # dihedral views: rotations 0/90/180/270, then the same mirrored
# views averaged at prediction unless a model records another number: the four rotations are as
# accurate as all eight (docs/performance.md) at half the cost
PREDICT_VIEWS = 4


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB crop becomes a network input; stored in every model's metadata.

    appearance: "canonical" (``appearance.canonical_appearance`` first) or "plain".
    geometry: "stretch" (resize to size x size, Ikemoto et al. (2022)'s way), "pad" (pad to a square
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
        check_preprocessing(self.to_dict())  # bounds: e.g. no input size that exhausts memory

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (mean and std as lists)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones take defaults."""
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def read_crop_rgb(image) -> np.ndarray:
    """A crop as the network reads it: any grey/RGB(A) array or image path -> uint8 HxWx3
    (floats in [0, 1] scaled by 255, wider ranges by their maximum; no contrast stretch, unlike
    :func:`.crops.as_rgb_uint8` for whole spreads)."""
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


def prepare_image(image, prep: Preprocessing, out: np.ndarray | None = None) -> np.ndarray:
    """One RGB crop -> float32 3xSxS normalised network input (no view applied), written into
    ``out`` when given (a batch's slot: no new array per crop)."""
    arr = read_crop_rgb(image)
    x = np.empty((3, prep.size, prep.size), np.float32) if out is None else out
    if prep.appearance == "canonical":
        if prep.geometry in ("pad", "stretch"):  # the canonical crop is square: both are equal
            return _canonical_input(arr, prep, x)
        arr = read_crop_rgb(canonical_appearance(arr))
    s = prep.size
    h, w = arr.shape[:2]
    if prep.geometry == "stretch":
        square = _resize(arr, s, s)
    elif prep.geometry == "pad":
        side = max(h, w)
        canvas = np.full((side, side, 3), prep.fill, np.uint8)
        y0, x0 = (side - h) // 2, (side - w) // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = arr
        square = _resize(canvas, s, s)
    elif prep.geometry == "canvas":
        f = prep.scale
        if max(h, w) * f > s:
            f = s / max(h, w)
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
        small = _resize(arr, nh, nw) if (nh, nw) != (h, w) else arr
        square = np.full((s, s, 3), prep.fill, np.uint8)
        y0, x0 = (s - nh) // 2, (s - nw) // 2
        square[y0 : y0 + nh, x0 : x0 + nw] = small
    else:
        raise ChromosortError(f"unknown preprocessing geometry {prep.geometry!r}")
    lut = _normalisation_table(prep.mean, prep.std)
    for c in range(3):
        np.take(lut[c], square[..., c], out=x[c])
    return x


def _canonical_input(arr: np.ndarray, prep: Preprocessing, out: np.ndarray) -> np.ndarray:
    """The network input of a crop in its canonical appearance, reframed straight to the input
    size, written into ``out``: the canonical rendering and the normalisation are one affine map
    of the contrast map per channel (no intermediate image, no rounding to 8 bits)."""
    offset, slope = _canonical_affine(prep.mean, prep.std)
    t = canonical_contrast(arr, prep.size)
    for c in range(3):
        np.multiply(t, slope[c], out=out[c])
        out[c] += offset[c]
    return out


@functools.lru_cache(maxsize=8)
def _canonical_affine(mean: tuple, std: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(offset, slope), each (3,) float32: the normalised input of contrast ``t`` is
    ``offset + slope * t`` (the rendering ``CORE + t * (255 - CORE)``, then ``(v / 255 - mean) /
    std``)."""
    core = np.asarray(CORE_RGB, np.float64) / 255.0
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return ((core - mean) / std).astype(np.float32), ((1.0 - core) / std).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _normalisation_table(mean: tuple, std: tuple) -> np.ndarray:
    """(3, 256) float32: every uint8 value of each channel as (v / 255 - mean) / std, computed
    as the per-pixel formula would, so looking values up gives the same bits, several times
    faster."""
    v = np.arange(256, dtype=np.float32) / 255.0
    table = (v[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[
        :, None
    ]
    table.setflags(write=False)
    return table


def preprocess(images: Sequence, prep: Preprocessing):
    """List of RGB crops -> torch float tensor (N, 3, S, S)."""
    return torch.from_numpy(preprocess_array(images, prep))


def preprocess_array(images: Sequence, prep: Preprocessing) -> np.ndarray:
    """List of RGB crops -> float32 array (N, 3, S, S) (see :func:`prepare_image`)."""
    x = np.empty((len(images), 3, prep.size, prep.size), np.float32)
    for i, image in enumerate(images):
        prepare_image(image, prep, out=x[i])
    return x


def dihedral(x, view: int):
    """View ``view`` (0..7) of a batch (N, C, H, W), a tensor or an array (then a view of it, not
    a copy): rotation by 90*(view % 4), flipped if >= 4."""
    k = view % 4
    if isinstance(x, np.ndarray):
        x = x[..., ::-1] if view >= 4 else x
        return np.rot90(x, k, axes=(2, 3)) if k else x
    if view >= 4:
        x = torch.flip(x, dims=(3,))
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

    try:
        source = inspect.getsource(appearance)
    except (OSError, TypeError):
        source = getattr(appearance, "__version__", "unknown")
    return hashlib.sha1(source.encode()).hexdigest()[:12]


FEATURE_FORMAT = "features-v3"  # bump when the stored features change for the same setting
CACHE_AUTO = "auto"  # TrainingConfig.cache_dir: the user cache's features/ folder
CACHE_OFF = ("none", "off", "")
MAX_CACHE_BYTES = 2 * 2**30  # the on-disk feature cache is kept under this size (oldest out)


def feature_cache_dir(value: str | os.PathLike | None = CACHE_AUTO) -> Path | None:
    """Where features are cached on disk: ``"auto"`` -> ``features/`` in the user cache
    (:func:`.fast_inference.user_cache_dir`, moved by ``$CHROMOSORT_CACHE_DIR``); None, "none"
    or "off" -> nowhere (memory only); anything else -> that folder."""
    if value is None or str(value).strip().lower() in CACHE_OFF:
        return None
    if str(value).strip().lower() == CACHE_AUTO:
        return user_cache_dir() / "features"
    return Path(value)


def _setting_key(backbone, prep: Preprocessing) -> str:
    """Everything features depend on besides the crop: backbone, weights, taps, preprocessing.
    Not the number of views: view v is the same array whatever the number computed, so a
    request for fewer views is the first rows of a cached crop."""
    blob = json.dumps(
        {
            "format": FEATURE_FORMAT,
            "appearance_version": appearance_version() if prep.appearance == "canonical" else "",
            "backbone": backbone.name,
            "weights": backbone.weights_source,
            "taps": list(backbone.taps),
            "prep": prep.to_dict(),
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


_MEMORY: dict[tuple[str, str], np.ndarray] = {}


def _load_cached(path: Path, views: int) -> np.ndarray | None:
    """A cached crop's features (stored views, D) if the file holds at least ``views`` views."""
    try:
        with open(path, "rb") as handle:
            arr = np.load(handle)
    except (OSError, ValueError, EOFError):
        return None
    if arr.ndim != 2 or arr.shape[0] < views or arr.dtype != np.float32:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: pruned last
    return arr


_CACHE_NAMES = r"[0-9a-f]{16}/[0-9a-f]{40}\.npy|inner-cv/[0-9a-f]{24}(-head)?\.npz"
_CACHE_FOLDERS = r"[0-9a-f]{16}|inner-cv"


def claim_cache(root: Path) -> bool:
    """Mark ``root`` as the tool's cache when it is new, empty, or holds only cache folders (made
    by an earlier version); returns whether the tool owns it (and may prune it)."""
    import re

    root = Path(root)
    if root.is_dir() and not is_link(root) and not owns(root):
        names = [p.name for p in root.iterdir() if p.name != MARKER]
        if names and all(re.fullmatch(_CACHE_FOLDERS, n) for n in names):
            mark_owned(root)
    return claim_folder(root, what="feature cache folder")


def prune_cache(folder: str | os.PathLike, limit: int = MAX_CACHE_BYTES) -> int:
    """Delete the least recently used feature files (and stored inner-CV results of
    :mod:`.training.head`) until ``folder`` holds at most ``limit`` bytes; returns the number of
    files deleted. Only inside a folder the tool made (:func:`.safety.owns`), only files named as
    the cache names them, never through a link: a folder of someone else's arrays is left
    alone."""
    import re

    files = []
    if not owns(folder):
        return 0
    for path in (*Path(folder).glob("*/*.npy"), *Path(folder).glob("inner-cv/*.npz")):
        rel = f"{path.parent.name}/{path.name}"
        if not re.fullmatch(_CACHE_NAMES, rel) or is_link(path.parent) or is_link(path):
            continue
        try:
            st = path.stat()
        except OSError:
            continue
        files.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in sorted(files, key=lambda f: f[0]):
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


def extract_features(
    backbone,
    images: Sequence,
    prep: Preprocessing | None = None,
    views: int = N_VIEWS,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    device=None,
    cache_limit: int = MAX_CACHE_BYTES,
) -> Generator[Progress, None, np.ndarray]:
    """Pooled frozen features of every crop in every view; returns them, (N, views, D) float32.

    Cached in memory for the process and, with ``cache_dir`` (see :func:`feature_cache_dir`),
    on disk: one .npy per crop and setting (:func:`_setting_key`), the folder kept under
    ``cache_limit`` bytes (least recently used out). A crop cached with more views is used for
    fewer (its first views); one cached with fewer is computed again.
    """
    prep = prep or Preprocessing()
    views = int(views)
    setting = _setting_key(backbone, prep)
    keys = [image_key(im) for im in images]
    out: list[np.ndarray | None] = [None] * len(images)
    root = feature_cache_dir(cache_dir) if cache_dir is not None else None
    cache = root / setting if root is not None else None
    todo = _read_before(setting, keys, cache, views, out)
    total = len(todo)
    before = len(images) - total
    yield Progress(0, total, f"reading crops with the network: {total} new, {before} read before")
    if device is None:
        device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    if cache is not None and total:
        cache = _writable_cache(root, cache)
    runner = _frozen_runner(backbone, prep, total * views, device) if total else None
    with torch.no_grad():
        for start in range(0, total, batch_size):
            idx = todo[start : start + batch_size]
            batch = [images[i] for i in idx]
            if runner is not None:  # numpy from end to end beside ONNX Runtime's threads
                x = preprocess_array(batch, prep)
                per_view = [runner(dihedral(x, v)) for v in range(views)]
            else:
                x = preprocess(batch, prep).to(device)
                per_view = [backbone(dihedral(x, v)).float().cpu().numpy() for v in range(views)]
            feats = np.stack(per_view, axis=1).astype(np.float32)  # (b, views, D)
            for j, i in enumerate(idx):
                out[i] = feats[j]
                _MEMORY[(setting, keys[i])] = feats[j]
                if cache is not None:
                    try:
                        with atomic_path(cache / f"{keys[i]}.npy") as tmp:
                            np.save(tmp, feats[j])
                    except OSError:
                        cache = None
            done = min(start + batch_size, total)
            yield Progress(done, total, f"reading crops with the network: {done} of {total}")
    backbone.train(was_training)
    if cache is not None and total:
        prune_cache(root, cache_limit)
    return np.stack(out) if out else np.zeros((0, views, backbone.feature_dim), np.float32)


def _read_before(setting: str, keys: list, cache: Path | None, views: int, out: list) -> list:
    """Fill ``out`` with the features held in memory or in ``cache`` (with at least ``views``
    views); returns the indices still to compute."""
    todo = []
    for i, key in enumerate(keys):
        hit = _MEMORY.get((setting, key))
        if hit is not None and hit.shape[0] < views:
            hit = None
        if hit is None and cache is not None:
            hit = _load_cached(cache / f"{key}.npy", views)
            if hit is not None:
                _MEMORY[(setting, key)] = hit
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit[:views]
    return todo


def _writable_cache(root: Path, cache: Path) -> Path | None:
    """``cache`` claimed and made, or None (memory only) when it is read-only or behind a link."""
    try:
        claim_cache(root)
        no_links(root, cache, "feature cache folder")
        cache.mkdir(parents=True, exist_ok=True)
    except (OSError, ChromosortError):
        return None
    return cache


def _frozen_runner(backbone, prep: Preprocessing, forwards: int, device):
    """Array batch -> pooled features (float32) in ONNX Runtime, on CPU where available and
    worth it (:mod:`.fast_inference`); None: the torch backbone does the work."""
    if device is None or str(device) == "cpu":
        return onnx_runner(backbone, prep.size, "pooled-taps", forwards)
    return None


def clear_memory_cache() -> None:
    """Forget the features held in memory (the on-disk cache stays)."""
    _MEMORY.clear()
