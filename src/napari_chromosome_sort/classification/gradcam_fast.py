"""Grad-CAM terms of a linear pooled head in the same forward as its features, run in ONNX
Runtime: what makes a whole spread's Grad-CAM cost about one more classification
(:func:`explained_proba` hands the terms of the classifying forward to
:func:`.gradcam.gradcams`). See :mod:`.gradcam` for the map itself."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def background_colours(x):
    """Per crop and channel, the median of the border pixels of the network input (N, C, H, W),
    the lower of the two middle values as ``torch.median`` takes it: the pad colour of padded
    crops. (N, C), a tensor or an array like ``x``."""
    if isinstance(x, np.ndarray):
        border = np.concatenate([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], axis=-1)
        middle = (border.shape[-1] - 1) // 2
        return np.partition(border, middle, axis=-1)[..., middle]
    border = torch.cat(
        [x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1
    )  # (N, C, 4S)
    return border.median(dim=-1).values


def _classes(logits, class_indices) -> list[int]:
    return [int(logits[i].argmax()) if c is None else int(c) for i, c in enumerate(class_indices)]


class _HeadTermsNet(torch.nn.Module):
    """The pooled features of a linear pooled head's backbone and, in the same forward, every
    tapped layer's Grad-CAM term for every class (``layers="head"``, reference not subtracted).

    A linear head's gradient with respect to its features is a constant (its weights over the
    features' spread), so each term is a fixed 1x1 convolution of the layer's activations: the
    whole map costs one forward, which ONNX Runtime can run."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone
        weight = model.head.net.weight.detach() / model.head.sigma.detach()[None]  # d logit / d f
        cells = _last_tap_cells(self.backbone, model.input_size)
        self.used, offset = [], 0
        for index, c in enumerate(self.backbone.spec.channels):
            g = (weight[:, offset : offset + c] + weight[:, offset + c : offset + 2 * c]) / cells
            offset += 2 * c
            if torch.any(g != 0):
                self.register_buffer(f"g{index}", g[:, :, None, None].contiguous())
                self.used.append(index)

    def forward(self, x):
        """(pooled features (N, D), term of each used layer (N, k, h_l, w_l)...)."""
        from napari_chromosome_sort.classification.models.backbones import pool_taps

        taps = self.backbone.forward_taps(x)
        terms = [F.conv2d(taps[i], getattr(self, f"g{i}")) for i in self.used]
        return (pool_taps(taps), *terms)


def _last_tap_cells(backbone, input_size: int) -> int:
    """Cells (height x width) of the backbone's last tapped layer for inputs of ``input_size``."""
    key = (backbone.name, input_size)
    if key not in _CELLS:
        with torch.no_grad():
            last = backbone.forward_taps(torch.zeros(1, 3, input_size, input_size))[-1]
        _CELLS[key] = int(last.shape[-2] * last.shape[-1])
    return _CELLS[key]


_CELLS: dict[tuple[str, int], int] = {}


def _fast_head_runner(model, forwards: int):
    """The ONNX Runtime runner of :class:`_HeadTermsNet` for ``model`` (x -> [features,
    terms...]), or None: not a linear pooled head, not on CPU, ONNX Runtime unavailable or not
    worth an export for ``forwards`` crops. Kept on the model while its head is unchanged."""
    from napari_chromosome_sort.classification.models.fast_inference import (
        onnx_runner,
        usable,
        weights_hash,
    )

    head = model.head
    if model.head_kind != "pooled" or getattr(head, "hidden", 1) != 0 or not usable(model):
        return None
    key = (weights_hash(head), model.input_size)
    kept = getattr(model, "_head_terms_runner", None)
    if kept is not None and kept[0] == key:
        return kept[1]
    net = _HeadTermsNet(model).eval()
    run = onnx_runner(net, model.input_size, "head-terms", forwards, outputs=1 + len(net.used))
    if run is not None:
        model._head_terms_runner = (key, run)
    return run


def _class_terms(run, x, reference: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pooled features (N, D) of a batch (a tensor or an array) and, per used layer, the
    Grad-CAM terms of every class (N, k, h_l, w_l), the blank reference subtracted when
    ``reference == "blank"``."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    features, *terms = run(x)
    if reference == "blank":
        blanks = _blank_terms(run, background_colours(x), x.shape[-1])
        terms = [t - b for t, b in zip(terms, blanks, strict=True)]
    return features, terms


_BLANK_TERMS: dict[int, tuple] = {}  # id(run) -> (run, {colour bytes: [per-layer terms]})
_BLANK_COLOURS_KEPT = 64


def _blank_terms(run, colours: np.ndarray, size: int) -> list[np.ndarray]:
    """Per used layer, the terms (N, k, h_l, w_l) of blank ``size`` x ``size`` inputs of
    ``colours`` (N, C), run once per colour the runner has not seen before (a spread's crops,
    and the spreads of a run, share one background colour)."""
    kept = _BLANK_TERMS.get(id(run))
    if kept is None or kept[0] is not run:
        _BLANK_TERMS.clear()  # one runner at a time: a new model's
        kept = _BLANK_TERMS[id(run)] = (run, {})
    by_colour = kept[1]
    unique, inverse = np.unique(colours, axis=0, return_inverse=True)
    new = [c for c in unique if c.tobytes() not in by_colour]
    if new:
        if len(by_colour) + len(new) > _BLANK_COLOURS_KEPT:
            by_colour.clear()
        blanks = np.ascontiguousarray(
            np.broadcast_to(
                np.stack(new)[:, :, None, None], (len(new), colours.shape[1], size, size)
            ),
            dtype=np.float32,
        )
        terms = run(blanks)[1:]
        for i, c in enumerate(new):
            by_colour[c.tobytes()] = [t[i] for t in terms]
    layers = zip(*(by_colour[c.tobytes()] for c in unique), strict=True)
    return [np.stack(layer)[inverse.ravel()] for layer in layers]


def _fast_head_terms(model, x, class_indices, reference: str, forwards: int):
    """:func:`_head_layer_terms` computed by one ONNX Runtime forward (see
    :class:`_HeadTermsNet`), or None when that path is not available."""
    run = _fast_head_runner(model, forwards)
    if run is None:
        return None
    features, terms = _class_terms(run, x, reference)
    classes = _classes(model.head.numpy_logits(features), class_indices)
    picked = np.arange(len(classes)), classes
    return [torch.from_numpy(t[picked]) for t in terms], classes


def explained_proba(
    model, images, tta: bool = True, views: int | None = None
) -> tuple[np.ndarray, list | None]:
    """``model.predict_proba(images, tta, views=views)`` and, when a linear pooled head runs in
    ONNX Runtime, the Grad-CAM terms (``layers="head"``, blank reference) of every class,
    computed in the same forward as the first view: one entry per crop for
    :func:`spread_gradcam`'s ``terms``; None when that path is not available."""
    images = list(images)
    n_views = (model.prediction_views if tta else 1) if views is None else views
    run = _fast_head_runner(model, len(images) * n_views) if images else None
    if run is None:
        return model.predict_proba(images, tta=tta, views=views), None
    collected: list = []

    def first_view(x: np.ndarray) -> np.ndarray:
        """View 0's logits, keeping its Grad-CAM terms."""
        features, terms = _class_terms(run, x, "blank")
        collected.extend(zip(*terms, strict=True))
        return model.head.numpy_logits(features)

    return model.predict_proba(images, tta=tta, views=views, first_view=first_view), collected
