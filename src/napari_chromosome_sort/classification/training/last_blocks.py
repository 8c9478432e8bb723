"""Fine-tuning the last backbone blocks against a frozen rest, on cached activations.

The trunk is cut before its last ``blocks`` fine-tunable blocks (``BackboneSpec.blocks``). The
frozen part runs ONCE per crop and view: its output map and the pooled features of the taps it
holds are kept (in memory and, with a cache folder, on disk), so every training pass runs only
the last blocks, on a CPU in seconds per pass. The pooled features keep the layout of
:func:`..models.backbones.pool_taps` (frozen taps first, then the tuned ones), so the head of
:func:`.head.train_head` is fitted on them as on frozen features, and the tuned blocks are
copied back into the backbone: the model file, ONNX export and Grad-CAM stay as they are.

Training: the tuned blocks and a linear layer on the standardised pooled features (first fitted
on the frozen features), class-balanced cross-entropy, one random cached view per crop and pass,
Adam, a fixed number of passes.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from napari_chromosome_sort.classification.features import (
    FEATURE_FORMAT,
    appearance_version,
    dihedral,
    image_key,
    preprocess,
)
from napari_chromosome_sort.classification.models.backbones import pool_taps
from napari_chromosome_sort.classification.models.heads import balance_weights
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import atomic_path
from napari_chromosome_sort.progress import Progress

__all__ = [
    "Tail",
    "frozen_part",
    "graft",
    "split_index",
    "tail_features",
    "tune_tail",
    "tuned_source",
]


def split_index(backbone, blocks: int) -> int:
    """The trunk index of the first tuned block when the last ``blocks`` blocks are tuned."""
    spec = backbone.spec
    if not 1 <= blocks <= len(spec.blocks):
        raise ChromosortError(
            f"{spec.name} has {len(spec.blocks)} fine-tunable blocks; asked to tune {blocks}"
        )
    first = spec.blocks[-blocks]
    if first <= min(spec.taps):
        raise ChromosortError(f"tuning {blocks} blocks of {spec.name} leaves no frozen tap")
    return first


class Tail(nn.Module):
    """The trunk from ``split`` on: (frozen map, frozen pooled taps) -> every tap pooled."""

    def __init__(self, backbone, split: int):
        super().__init__()
        last = max(backbone.taps)
        self.split = split
        self.layers = nn.ModuleList(
            copy.deepcopy(backbone.trunk[i]) for i in range(split, last + 1)
        )
        self.taps = [i - split for i in backbone.taps if i >= split]
        for p in self.layers.parameters():  # the backbone's copy is frozen; this one learns
            p.requires_grad_(True)

    def forward(self, x: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, D): the frozen taps' as given, then the tuned ones'."""
        maps = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.taps:
                maps.append(x)
        return torch.cat([frozen, pool_taps(maps)], dim=1)


def _frozen_key(backbone, prep, split: int) -> str:
    blob = json.dumps(
        {
            "format": f"{FEATURE_FORMAT}-frozen-part",
            "appearance": appearance_version() if prep.appearance == "canonical" else "",
            "backbone": backbone.name,
            "weights": backbone.weights_source,
            "split": split,
            "prep": prep.to_dict(),
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def frozen_part(
    backbone,
    images: Sequence,
    prep,
    split: int,
    views: int = 4,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray]]:
    """The frozen part's output map (n, views, C, H, W) float16 and the pooled features of its
    taps (n, views, D_frozen) float32, for every crop and its first ``views`` dihedral views;
    cached on disk under ``cache_dir`` (one .npz per crop) when given."""
    folder = (
        Path(cache_dir) / "frozen-part" / _frozen_key(backbone, prep, split) if cache_dir else None
    )
    keys = [image_key(image) for image in images]
    maps: list = [None] * len(images)
    pooled: list = [None] * len(images)
    todo = []
    for i, key in enumerate(keys):
        path = folder / f"{key}.npz" if folder else None
        if path is not None and path.is_file():
            with np.load(path) as stored:
                if stored["maps"].shape[0] >= views:
                    maps[i], pooled[i] = stored["maps"][:views], stored["pooled"][:views]
                    continue
        todo.append(i)
    if folder is not None and todo:
        folder.mkdir(parents=True, exist_ok=True)
    head_taps = [t for t in backbone.taps if t < split]
    backbone.eval()
    with torch.no_grad():
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            x = preprocess([images[i] for i in idx], prep)
            out_maps, out_pooled = [], []
            for view in range(views):
                h, taps = dihedral(x, view), []
                for index in range(split):
                    h = backbone.trunk[index](h)
                    if index in head_taps:
                        taps.append(h)
                out_maps.append(h.half().numpy())
                out_pooled.append(pool_taps(taps).float().numpy())
            m, p = np.stack(out_maps, 1), np.stack(out_pooled, 1)
            for j, i in enumerate(idx):
                maps[i], pooled[i] = m[j], p[j]
                if folder is not None:
                    with atomic_path(folder / f"{keys[i]}.npz") as tmp, open(tmp, "wb") as handle:
                        np.savez(handle, maps=m[j], pooled=p[j])
            done = min(start + batch_size, len(todo))
            yield Progress(done, len(todo), f"frozen part of the network: {done} of {len(todo)}")
    return np.stack(maps), np.stack(pooled)


def tail_features(
    tail: Tail, maps: np.ndarray, pooled: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Pooled features (n, views, D) of every crop and view through ``tail``."""
    n, views = maps.shape[:2]
    flat_maps = maps.reshape(n * views, *maps.shape[2:])
    flat_pooled = pooled.reshape(n * views, -1)
    out = []
    tail.eval()
    with torch.no_grad():
        for s in range(0, n * views, batch_size):
            x = torch.from_numpy(flat_maps[s : s + batch_size].astype(np.float32))
            out.append(tail(x, torch.from_numpy(flat_pooled[s : s + batch_size])).numpy())
    return np.concatenate(out).reshape(n, views, -1)


def _initial_linear(X: np.ndarray, y: np.ndarray, k: int, l2: float) -> nn.Linear:
    """A class-balanced logistic layer on standardised features (n, views, D), views pooled."""
    Z = torch.from_numpy(X.reshape(-1, X.shape[-1]))
    yt = torch.from_numpy(np.repeat(y, X.shape[1])).long()
    weights = torch.from_numpy(balance_weights(y, k, True)).float()
    linear = nn.Linear(X.shape[-1], k)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(linear(Z), yt, weight=weights)
        loss = loss + 0.5 * l2 * linear.weight.pow(2).sum() / len(y)
        loss.backward()
        return loss

    opt.step(closure)
    return linear


def tune_tail(
    tail: Tail,
    maps: np.ndarray,
    pooled: np.ndarray,
    y: np.ndarray,
    k: int,
    epochs: int = 5,
    lr: float = 1e-4,
    l2: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    initial: np.ndarray | None = None,
) -> Generator[Progress, None, Tail]:
    """Train ``tail``'s blocks with a linear layer on the crops' cached frozen part (rows of
    ``maps``/``pooled``, targets ``y``); ``epochs`` passes, one random view per crop and pass.
    ``initial``: the crops' pooled features through the untuned tail, when known.
    Returns the tuned tail (the linear layer is only a training aid)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    y = np.asarray(y, int)
    X0 = tail_features(tail, maps, pooled) if initial is None else initial
    mu = X0.reshape(-1, X0.shape[-1]).mean(0)
    sd = X0.reshape(-1, X0.shape[-1]).std(0) + 1e-6
    linear = _initial_linear((X0 - mu) / sd, y, k, l2)
    mu_t, sd_t = torch.from_numpy(mu), torch.from_numpy(sd)
    weights = torch.from_numpy(balance_weights(y, k, True)).float()
    opt = torch.optim.Adam(
        [{"params": tail.parameters(), "lr": lr}, {"params": linear.parameters(), "lr": lr}]
    )
    yt = torch.from_numpy(y).long()
    n, views = maps.shape[:2]
    for epoch in range(epochs):
        tail.train()
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            b = order[s : s + batch_size]
            v = rng.integers(views, size=len(b))
            x = torch.from_numpy(maps[b, v].astype(np.float32))
            f = tail(x, torch.from_numpy(pooled[b, v]))
            loss = nn.functional.cross_entropy(linear((f - mu_t) / sd_t), yt[b], weight=weights)
            loss = loss + 0.5 * l2 * linear.weight.pow(2).sum() / n
            opt.zero_grad()
            loss.backward()
            opt.step()
        yield Progress(
            epoch + 1, epochs, f"fine-tuning the last blocks: pass {epoch + 1} of {epochs}"
        )
    tail.eval()
    return tail


def tuned_source(backbone, blocks: int) -> str:
    """The weights source of a backbone whose last ``blocks`` blocks were tuned: its source and
    a digest of those blocks, so that features cached for the untuned weights are never read
    for it (the feature cache is keyed by the weights source)."""
    digest = hashlib.sha1()
    for index in backbone.spec.blocks[-blocks:]:
        for value in backbone.trunk[index].state_dict().values():
            digest.update(value.detach().cpu().numpy().tobytes())
    return f"{backbone.weights_source} + last {blocks} blocks tuned {digest.hexdigest()[:12]}"


def graft(backbone, tail: Tail) -> None:
    """Copy ``tail``'s tuned blocks into ``backbone``'s trunk (frozen again); its weights source
    records the tuning (:func:`tuned_source`)."""
    for offset, layer in enumerate(tail.layers):
        backbone.trunk[tail.split + offset].load_state_dict(layer.state_dict())
    blocks = sum(1 for index in backbone.spec.blocks if index >= tail.split)
    backbone.weights_source = tuned_source(backbone, blocks)
    backbone.freeze(0)
