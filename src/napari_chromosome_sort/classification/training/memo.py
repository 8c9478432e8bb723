"""The result of a head search kept beside the cached features: training again on the same
crops and settings reuses the inner-CV scores, out-of-fold logits and final linear head instead
of repeating hundreds of fits (the same result)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import numpy as np
import torch

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.features import feature_cache_dir
from napari_chromosome_sort.classification.models.classifier import PooledHead
from napari_chromosome_sort.files.atomic import atomic_path

# settings that do not change the inner-CV result of a head search
_NOT_SEARCH = ("device", "cache_dir", "predict_views", "finetune_epochs", "finetune_lr")
INNER_CV_FORMAT = "inner-cv-v2"  # bump when the search computes something else for the same input


class InnerCVMemo:
    """The inner-CV scores and out-of-fold logits of a head search, kept in the feature cache
    (``inner-cv/<key>.npz``) and keyed by a hash of the features, targets, candidate designs
    and settings: training again on the same crops reuses them instead of repeating hundreds
    of fits (the same result). Off when the feature cache is off."""

    def __init__(self, config: TrainingConfig, arrays: dict, y: np.ndarray, candidates: list):
        self.candidates = candidates
        root = feature_cache_dir(config.cache_dir)
        self.path = None
        if root is None:
            return
        h = hashlib.sha1(INNER_CV_FORMAT.encode())
        settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_SEARCH}
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        for key, X in arrays.items():
            h.update(json.dumps(key.to_dict() if key is not None else None).encode())
            h.update(str(X.shape).encode())
            h.update(np.ascontiguousarray(X, dtype=np.float32).data)
        h.update(np.asarray(y, np.int64).tobytes())
        labels = [(c[0].to_dict() if c[0] is not None else None, *c[1:]) for c in candidates]
        h.update(json.dumps(labels, sort_keys=True).encode())
        self.path = root / "inner-cv" / f"{h.hexdigest()[:24]}.npz"

    def load(self) -> tuple[dict, dict]:
        """(scores, out-of-fold logits) by candidate, or two empty dicts."""
        if self.path is None or not self.path.is_file():
            return {}, {}
        try:
            with np.load(self.path) as data:
                scores, oofs = data["scores"], data["oofs"]
            if scores.shape != (len(self.candidates), 2) or len(oofs) != len(self.candidates):
                return {}, {}
            os.utime(self.path)
        except (OSError, ValueError, KeyError, EOFError):
            return {}, {}
        return (
            {c: (float(a), float(b)) for c, (a, b) in zip(self.candidates, scores, strict=True)},
            dict(zip(self.candidates, oofs, strict=True)),
        )

    def _head_path(self):
        return self.path.with_name(self.path.stem + "-head.npz")

    def load_head(self, width: int, k: int, arrays: dict):
        """``(head, info)`` of the linear head trained last on this input, or None."""
        if self.path is None or not self._head_path().is_file():
            return None
        try:
            with np.load(self._head_path()) as data:
                tensors = {name: torch.from_numpy(data[name].copy()) for name in data.files}
            info = json.loads(bytes(tensors.pop("info").numpy()).decode())
            head = PooledHead(width, k)
            head.load_state_dict(tensors)
            os.utime(self._head_path())
        except (OSError, ValueError, KeyError, EOFError, RuntimeError, TypeError):
            return None
        by_dict = {
            json.dumps(key.to_dict() if key is not None else None, sort_keys=True): key
            for key in arrays
        }
        stored = json.dumps(info["preprocessing"], sort_keys=True)
        if stored not in by_dict:
            return None
        info["preprocessing"] = by_dict[stored]
        head.eval()
        return head, info

    def save_head(self, head, info: dict) -> None:
        """Keep the final linear head and its info (nothing if the cache cannot be written)."""
        if self.path is None:
            return
        key = info["preprocessing"]
        text = json.dumps({**info, "preprocessing": key.to_dict() if key is not None else None})
        tensors = {name: t.detach().cpu().numpy() for name, t in head.state_dict().items()}
        tensors["info"] = np.frombuffer(text.encode(), np.uint8)
        with contextlib.suppress(OSError), atomic_path(self._head_path()) as tmp:
            np.savez(tmp, **tensors)

    def save(self, scores: dict, oofs: dict) -> None:
        """Keep a finished search (nothing if the cache cannot be written)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError), atomic_path(self.path) as tmp:
            np.savez(
                tmp,
                scores=np.asarray([scores[c] for c in self.candidates], np.float64),
                oofs=np.stack([oofs[c] for c in self.candidates]).astype(np.float32),
            )
