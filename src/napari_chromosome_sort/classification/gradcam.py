"""Grad-CAM per crop, pasted onto the spread: by default over every layer the pooled head reads.

Classic Grad-CAM (Selvaraju et al. 2017; ``layers="last"``) at ``model.cam_layer`` (SqueezeNet
1.1: the last Fire module ``features[12]``; ResNet-18: ``layer4``):
``cam = ReLU(sum_k w_k A_k)``, ``w_k = mean_xy d(score_c)/d(A_k)``, ``A`` that layer's activation.

The pooled head (``head_kind == "pooled"``) reads average- and max-pooled features of *several*
layers (``backbone.taps``: SqueezeNet Fire 4, 7, 9, 10, 11, 12; ResNet-18 layer2, 3, 4), so the
gradient at the last layer sees only the part of the score that flows through that layer's
features. ``layers="head"`` (default) takes a Grad-CAM term at every tapped layer ``l``, with the
gradient of the score through the head's own read-out of that layer (not through the later
layers, which the head reads directly anyway)::

    term_l = (N_l / N_L) * sum_k w_lk (A_lk - R_lk),
    w_lk = mean_xy d(score_c)/d(A_lk) along the head's path = (g_avg_lk + g_max_lk) / N_l
    cam = sum_l up(ReLU(term_l))

``g_avg``/``g_max``: gradients of the score with respect to the pooled features; ``N_l = H_l W_l``
the layer's number of cells, ``N_L`` the last layer's; ``up``: bilinear upsampling to the network
input. The factor ``N_l / N_L`` puts all terms in one unit: each term's spatial mean is
``c_l / N_L`` with ``c_l`` the layer's linear contribution to the score (exact for average-pooled
features; for max-pooled ones Grad-CAM's mean gradient spreads it over the map, as usual). Each
layer goes through its own ReLU (its positive evidence) before the layers are added, as in
LayerCAM's multi-layer fusion (Jiang et al. 2021, IEEE TIP); summed before one ReLU, the layers'
signed terms mostly cancel on these heads (docs/validation.md).

``R`` is the reference (``reference=``): ``"blank"`` (default with ``layers="head"``) the same
layer's activation for a blank input (every pixel the crop's background colour), so a term shows
what the chromosome changes with respect to an empty crop (a difference-from-reference, as in
DeepLIFT, Shrikumar et al. 2017; Score-CAM's baseline image). Without it (``"zero"``, classic
Grad-CAM) the early layers' terms are dominated by what a white background alone activates, which
the standardising head cancels with its offsets. A layer whose head weights are all zero (feature
set ``"last"``) adds nothing, so for such a head ``layers="head"`` equals ``layers="last"`` with
the same reference. Heads that read only the trunk's output (``squeezenet_conv``,
``avgpool_fc``) get the single-layer map either way. ``layers="last"`` defaults to ``"zero"``:
the classic map, unchanged.

The map on the network input is mapped back through the classifier's preprocessing (canonical
reframing, pad/canvas geometry) to the crop's pixel grid, and then via :class:`crops.CropGeometry`
to the full image, so it paints exactly over the chromosome.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch

from napari_chromosome_sort.classification.gradcam_fast import (
    _classes,
    _fast_head_terms,
    background_colours,
    explained_proba,  # noqa: F401 - part of this module's API
)
from napari_chromosome_sort.display.cam_display import overlay  # noqa: F401 - part of this module's API
from napari_chromosome_sort.progress import Progress, run_to_end


def _input_to_prepared_frame(cam: np.ndarray, prepared_shape: tuple[int, int], prep) -> np.ndarray:
    """Map a map on the network input (S x S) back onto the image that entered the geometry step
    (the canonical or plain crop, ``prepared_shape``)."""
    from skimage.transform import resize

    h, w = prepared_shape
    s = cam.shape[0]
    geometry = getattr(prep, "geometry", "pad") if prep is not None else "pad"
    if geometry == "stretch":
        return resize(cam, (h, w), order=1, mode="edge", preserve_range=True).astype(np.float32)
    if geometry == "canvas":
        f = float(getattr(prep, "scale", 1.0))
        if max(h, w) * f > s:
            f = s / max(h, w)
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
        y0, x0 = (s - nh) // 2, (s - nw) // 2
        inner = cam[y0 : y0 + nh, x0 : x0 + nw]
        return resize(inner, (h, w), order=1, mode="edge", preserve_range=True).astype(np.float32)
    side = max(h, w)  # "pad": centred on a square canvas
    canvas = resize(cam, (side, side), order=1, mode="edge", preserve_range=True)
    y0, x0 = (side - h) // 2, (side - w) // 2
    return canvas[y0 : y0 + h, x0 : x0 + w].astype(np.float32)


LAYERS = ("head", "last")
REFERENCES = ("blank", "zero")


def _check(layers: str, reference: str | None) -> str:
    """Validate the options; returns the reference actually used (None: by ``layers``)."""
    from napari_chromosome_sort.errors import ChromosortError

    if layers not in LAYERS:
        raise ChromosortError(f"unknown Grad-CAM layers {layers!r}; choose one of {LAYERS}")
    if reference is None:
        return "blank" if layers == "head" else "zero"
    if reference not in REFERENCES:
        raise ChromosortError(
            f"unknown Grad-CAM reference {reference!r}; choose one of {REFERENCES} or None"
        )
    return reference


def blank_like(x):
    """The reference input: ``x`` with every pixel set to its background colour (see
    :func:`background_colours`)."""
    return background_colours(x)[..., None, None].expand_as(x).contiguous()


def _blank_acts(forward, x):
    """``forward(blank_like(x))`` with each distinct background colour run once (spreads' crops
    share one): a list of per-crop tensors (N, ...) of ``forward``'s outputs."""
    unique, inverse = torch.unique(background_colours(x), dim=0, return_inverse=True)
    blanks = unique[:, :, None, None].expand(-1, -1, *x.shape[-2:]).contiguous()
    with torch.no_grad():
        return [out[inverse] for out in forward(blanks)]


def _last_layer_terms(model, x, class_indices, reference: str):
    """Grad-CAM terms at ``model.cam_layer`` (full gradient, hooks) of a batch:
    ``([(N, h, w)], classes)``."""
    store: dict = {}

    def forward_hook(_module, _inputs, output):
        """Keep the layer's activations and, once backward runs, their gradient."""
        store["act"] = output
        if output.requires_grad:
            output.register_hook(lambda grad: store.__setitem__("grad", grad))

    handle = model.cam_layer.register_forward_hook(forward_hook)
    try:
        with torch.enable_grad():
            x_in = x.detach().clone().requires_grad_(True)  # frozen backbones get gradients too
            logits = model(x_in)
            classes = _classes(logits, class_indices)
            model.zero_grad(set_to_none=True)
            logits[torch.arange(len(classes)), classes].sum().backward()
        act = store["act"].detach()
        grad = store["grad"].detach()
        if reference == "blank":

            def cam_act(blanks):
                """The Grad-CAM layer's activations of ``blanks`` (a one-element list)."""
                model(blanks)
                return [store["act"].detach()]

            act = act - _blank_acts(cam_act, x)[0]
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3))
    return [(weights[:, :, None, None] * act).sum(1)], classes


def _head_layer_terms(model, x, class_indices, reference: str):
    """Grad-CAM terms of every layer the pooled head reads, in units of the last layer's cells
    (see the module docstring), of a batch: ``([(N, h_l, w_l), ...], classes)``."""
    from napari_chromosome_sort.classification.models.backbones import pool_taps

    with torch.no_grad():
        taps = model.backbone.forward_taps(x)
        features = pool_taps(taps)
        if reference == "blank":
            blank_taps = _blank_acts(model.backbone.forward_taps, x)
        else:
            blank_taps = [None] * len(taps)
    with torch.enable_grad():
        features = features.detach().clone().requires_grad_(True)
        logits = model.head(features)
        classes = _classes(logits, class_indices)
        score = logits[torch.arange(len(classes)), classes].sum()
        (grad,) = torch.autograd.grad(score, features)
    last_cells = taps[-1].shape[-2] * taps[-1].shape[-1]
    terms, offset = [], 0
    for act, blank in zip(taps, blank_taps, strict=True):
        act = act if blank is None else act - blank
        c = act.shape[1]
        # d(score)/d(A_k) through the head: g_avg/N everywhere + g_max at the argmax; its spatial
        # mean is (g_avg + g_max)/N_l, and the factor N_l/N_L leaves (g_avg + g_max)/N_L.
        g = grad[:, offset : offset + c] + grad[:, offset + c : offset + 2 * c]
        offset += 2 * c
        if torch.any(g != 0):
            terms.append(torch.einsum("nc,nchw->nhw", g, act) / last_cells)
    if offset != grad.shape[1]:
        raise RuntimeError(f"pooled head reads {grad.shape[1]} features, taps give {offset}")
    return terms, classes


def _sum_terms(terms, size: int) -> np.ndarray:
    """Every layer's term (N, h_l, w_l) through a ReLU, upsampled to ``size`` (bilinear,
    half-pixel centres, edge values beyond: ``F.interpolate(..., align_corners=False)``) and
    summed: (N, size, size) float32. Layers of one resolution are summed before their one
    upsampling (it is linear). In numpy: these maps are small, and torch's threads cost more
    than they save on them."""
    by_shape: dict[tuple, np.ndarray] = {}
    for term in terms:
        if isinstance(term, torch.Tensor):
            term = term.detach().float().cpu().numpy()
        rectified = np.maximum(term, 0.0, dtype=np.float32)
        key = rectified.shape
        by_shape[key] = rectified if key not in by_shape else by_shape[key] + rectified
    cam = None
    for summed in by_shape.values():
        up = _upsample(summed, size)
        cam = up if cam is None else cam + up
    return cam


def _upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (N, h, w) maps to (N, size, size), as ``F.interpolate(...,
    mode="bilinear", align_corners=False)``: one axis after the other."""

    def axis(n: int):
        source = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
        low = source.astype(np.intp)
        return low, np.minimum(low + 1, n - 1), (source - low).astype(np.float32)

    top, bottom, fy = axis(maps.shape[1])
    left, right, fx = axis(maps.shape[2])
    rows = maps[:, top] + fy[None, :, None] * (maps[:, bottom] - maps[:, top])
    return rows[:, :, left] + fx * (rows[:, :, right] - rows[:, :, left])


def _raw_cams(
    model,
    x,
    class_indices,
    layers: str = "head",
    reference: str | None = None,
    forwards: int = 0,
) -> tuple[np.ndarray, list[int]]:
    """Grad-CAM on the network input ((N, S, S) float32, >= 0) of a batch of preprocessed crops
    ``x``: every layer's term through a ReLU at its own resolution, upsampled (bilinear,
    half-pixel centres, edge values beyond), summed. ``forwards``: crops in the whole job (a
    large job of a linear pooled head runs in ONNX Runtime, see :class:`_HeadTermsNet`)."""
    reference = _check(layers, reference)
    was_training = model.training
    model.eval()
    try:
        if layers == "head" and getattr(model, "head_kind", None) == "pooled":
            fast = _fast_head_terms(model, x, class_indices, reference, forwards)
            terms, classes = fast or _head_layer_terms(model, x, class_indices, reference)
        else:
            terms, classes = _last_layer_terms(model, x, class_indices, reference)
    finally:
        model.train(was_training)
    if not terms:
        return np.zeros((x.shape[0], x.shape[-1], x.shape[-1]), np.float32), classes
    return _sum_terms(terms, x.shape[-1]), classes


def _raw_cam(
    model, x, class_index: int | None, layers: str = "head", reference: str | None = None
) -> tuple[np.ndarray, int]:
    """:func:`_raw_cams` of one preprocessed crop ``x`` (1, 3, S, S): ``(S x S map, class)``."""
    cams, classes = _raw_cams(model, x, [class_index], layers, reference)
    return cams[0], classes[0]


def _to_crop(cam: np.ndarray, crop: np.ndarray, prep, normalise: bool) -> np.ndarray:
    """A map on the network input, mapped back onto the crop's pixels (>= 0, max 1 when
    ``normalise``)."""
    from napari_chromosome_sort.classification.appearance import canonical_window

    canonical = prep is None or getattr(prep, "appearance", "canonical") == "canonical"
    if canonical:
        from napari_chromosome_sort.classification.appearance import DEFAULT_SIZE

        window = canonical_window(crop, DEFAULT_SIZE)
        if getattr(prep, "geometry", "pad") != "canvas":  # the input covers the window exactly
            heat = window.to_input(cam, crop.shape[:2])
        else:
            prepared = _input_to_prepared_frame(cam, (window.size, window.size), prep)
            heat = window.to_input(prepared, crop.shape[:2])
    else:
        heat = _input_to_prepared_frame(cam, crop.shape[:2], prep)
    heat = np.maximum(heat, 0.0).astype(np.float32)
    if normalise and heat.max() > 0:
        heat /= heat.max()
    return heat


GRADCAM_BATCH = 16  # crops per batched Grad-CAM pass (bounds the memory of the activations)


def gradcams(
    model,
    crops_rgb,
    class_indices=None,
    normalise: bool = True,
    layers: str = "head",
    reference: str | None = None,
    batch_size: int = GRADCAM_BATCH,
    forwards: int | None = None,
    terms: list | None = None,
) -> list[np.ndarray]:
    """:func:`gradcam` of many RGB crops, computed in batches (one forward and one backward per
    batch, or one forward in ONNX Runtime for a linear pooled head; the blank reference once per
    background colour): a list of float32 maps, each with its crop's height x width.
    ``class_indices``: one per crop (None entries or None: the predicted class); ``forwards``:
    crops of the whole job, when these are part of it (None: these crops). ``terms``: the
    crops' terms from :func:`explained_proba` (then no network runs; ``layers="head"`` with the
    blank reference, and every class index given)."""
    from napari_chromosome_sort.crops import as_rgb_uint8

    _check(layers, reference)
    crops = [as_rgb_uint8(c) for c in crops_rgb]
    wanted = [None] * len(crops) if class_indices is None else list(class_indices)
    if len(wanted) != len(crops):
        from napari_chromosome_sort.errors import ChromosortError

        raise ChromosortError(f"{len(crops)} crops but {len(wanted)} class indices")
    prep = getattr(model, "preprocessing", None)
    if terms is not None:
        return _heats_from_terms(model, crops, wanted, terms, layers, reference, prep, normalise)
    device = next(model.parameters()).device
    heats = []
    for start in range(0, len(crops), batch_size):
        chunk = crops[start : start + batch_size]
        x = model.preprocess(chunk).to(device)
        cams, _ = _raw_cams(
            model,
            x,
            wanted[start : start + batch_size],
            layers,
            reference,
            len(crops) if forwards is None else forwards,
        )
        heats.extend(
            _to_crop(cam, crop, prep, normalise) for cam, crop in zip(cams, chunk, strict=True)
        )
    return heats


def _heats_from_terms(model, crops, wanted, terms, layers, reference, prep, normalise):
    """:func:`gradcams` of crops whose terms :func:`explained_proba` computed."""
    from napari_chromosome_sort.errors import ChromosortError

    if (layers, _check(layers, reference)) != ("head", "blank") or None in wanted:
        raise ChromosortError(
            "stored Grad-CAM terms need layers='head', the blank reference "
            "and a class index for every crop"
        )
    if len(terms) != len(crops):
        raise ChromosortError(f"{len(crops)} crops but Grad-CAM terms of {len(terms)}")
    layers_of_crops = zip(*terms, strict=True)  # per layer: every crop's (k, h, w) terms
    picked = [
        np.stack([t[c] for t, c in zip(layer, wanted, strict=True)]) for layer in layers_of_crops
    ]
    cams = _sum_terms(picked, model.input_size)
    return [_to_crop(cam, crop, prep, normalise) for cam, crop in zip(cams, crops, strict=True)]


def gradcam(
    model,
    crop_rgb: np.ndarray,
    class_index: int | None = None,
    normalise: bool = True,
    layers: str = "head",
    reference: str | None = None,
):
    """Grad-CAM heatmap of one RGB crop, float32 with the crop's height x width, in [0, 1] when
    ``normalise`` (max scaled to 1). ``class_index=None`` explains the predicted class.
    ``layers``: ``"head"`` (default) sums the Grad-CAM terms of every layer the pooled head
    reads, each through its ReLU; ``"last"`` is the single-layer map at ``model.cam_layer``.
    ``reference``: ``"blank"`` explains the activations minus those of a blank crop (the crop's
    background colour everywhere), ``"zero"`` the raw activations (classic Grad-CAM); None (default)
    means ``"blank"`` for ``layers="head"`` and ``"zero"`` for ``"last"`` (the classic map)."""
    return gradcams(model, [crop_rgb], [class_index], normalise, layers, reference)[0]


def spread_gradcam(
    model,
    crops,
    class_indices=None,
    layers: str = "head",
    reference: str | None = None,
    terms: list | None = None,
) -> np.ndarray:
    """Per-object Grad-CAM maps pasted into one float32 image-shaped map (max where objects'
    windows overlap). ``crops``: list of :class:`crops.Crop` from the same image; ``layers`` and
    ``reference`` as in :func:`gradcam`; the crops go through the network in batches, or not
    at all with ``terms`` (see :func:`gradcams`)."""
    if not crops:
        raise ValueError("spread_gradcam needs at least one crop")
    steps = crop_gradcam_steps(model, crops, class_indices, layers, reference, terms=terms)
    return paste_maps(crops, run_to_end(steps))


def crop_gradcam_steps(
    model,
    crops,
    class_indices=None,
    layers: str = "head",
    reference: str | None = None,
    chunk: int = 2 * GRADCAM_BATCH,
    terms: list | None = None,
) -> Generator[Progress, None, list[np.ndarray]]:
    """:func:`gradcams` of the :class:`crops.Crop` objects of one spread, one chunk at a time,
    reporting after each chunk (so a caller can show progress and stop between chunks); returns
    one map per crop, on the crop's pixels."""
    _check(layers, reference)
    wanted = [None] * len(crops) if class_indices is None else list(class_indices)
    heats: list[np.ndarray] = []
    for start in range(0, len(crops), chunk):
        part = crops[start : start + chunk]
        heats += gradcams(
            model,
            [c.pixels for c in part],
            wanted[start : start + chunk],
            layers=layers,
            reference=reference,
            forwards=len(crops),
            terms=None if terms is None else terms[start : start + chunk],
        )
        yield Progress(
            len(heats), len(crops), f"Grad-CAM: {len(heats)} of {len(crops)} chromosomes"
        )
    return heats


def paste_maps(crops, heats) -> np.ndarray:
    """The crops' maps pasted into one float32 map of their image (max where windows overlap)."""
    out = np.zeros(crops[0].geometry.image_shape[:2], dtype=np.float32)
    for crop, heat in zip(crops, heats, strict=True):
        crop.geometry.paste_max(heat, out)
    return out
