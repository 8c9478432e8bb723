"""Grad-CAM (Selvaraju et al. 2017) on ``model.cam_layer``, per crop and pasted onto the spread.

``cam = ReLU(sum_k w_k A_k)``, ``w_k = mean_xy d(score_c)/d(A_k)`` where ``A`` is the activation
of ``model.cam_layer`` (SqueezeNet 1.1: the last Fire module ``features[12]``; ResNet-18:
``layer4``). The map is computed on the network input, mapped back through the classifier's
preprocessing (canonical reframing, pad/canvas geometry) to the crop's pixel grid, and then via
:class:`crops.CropGeometry` to the full image, so it paints exactly over the chromosome.
"""

from __future__ import annotations

import numpy as np


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


def _raw_cam(model, x, class_index: int | None) -> tuple[np.ndarray, int]:
    import torch

    store: dict = {}

    def forward_hook(_module, _inputs, output):
        store["act"] = output
        output.register_hook(lambda grad: store.__setitem__("grad", grad))

    handle = model.cam_layer.register_forward_hook(forward_hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)  # frozen backbones still get gradients
            logits = model(x)
            if class_index is None:
                class_index = int(logits[0].argmax())
            model.zero_grad(set_to_none=True)
            logits[0, class_index].backward()
    finally:
        handle.remove()
        model.train(was_training)
    act = store["act"].detach()[0]
    grad = store["grad"].detach()[0]
    weights = grad.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * act).sum(0))
    return cam.cpu().numpy().astype(np.float32), class_index


def gradcam(model, crop_rgb: np.ndarray, class_index: int | None = None, normalise: bool = True):
    """Grad-CAM heatmap of one RGB crop, float32 with the crop's height x width, in [0, 1] when
    ``normalise`` (max scaled to 1). ``class_index=None`` explains the predicted class."""
    from skimage.transform import resize

    from .appearance import canonical_window
    from .crops import as_rgb_uint8

    crop = as_rgb_uint8(crop_rgb)
    x = model.preprocess([crop]).to(next(model.parameters()).device)
    cam, _ = _raw_cam(model, x, class_index)
    size = x.shape[-1]
    cam = resize(cam, (size, size), order=1, mode="edge", preserve_range=True).astype(np.float32)
    prep = getattr(model, "preprocessing", None)
    canonical = prep is None or getattr(prep, "appearance", "canonical") == "canonical"
    if canonical:
        from .appearance import DEFAULT_SIZE

        window = canonical_window(crop, DEFAULT_SIZE)
        prepared = _input_to_prepared_frame(cam, (window.size, window.size), prep)
        heat = window.to_input(prepared, crop.shape[:2])
    else:
        heat = _input_to_prepared_frame(cam, crop.shape[:2], prep)
    heat = np.maximum(heat, 0.0).astype(np.float32)
    if normalise and heat.max() > 0:
        heat /= heat.max()
    return heat


def spread_gradcam(model, crops, class_indices=None) -> np.ndarray:
    """Per-object Grad-CAM maps pasted into one float32 image-shaped map (max where objects'
    windows overlap). ``crops``: list of :class:`crops.Crop` from the same image."""
    if not crops:
        raise ValueError("spread_gradcam needs at least one crop")
    out = np.zeros(crops[0].geometry.image_shape[:2], dtype=np.float32)
    for i, crop in enumerate(crops):
        cls = None if class_indices is None else int(class_indices[i])
        heat = gradcam(model, crop.pixels, cls)
        np.maximum(out, crop.geometry.to_image(heat), out=out)
    return out


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 RGB overlay of a [0, 1] heatmap (jet-like colours) on an image, for PNG export."""
    from .crops import as_rgb_uint8

    rgb = as_rgb_uint8(image).astype(np.float32)
    h = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    colour = np.stack(
        [
            np.clip(1.5 - np.abs(4 * h - 3), 0, 1),
            np.clip(1.5 - np.abs(4 * h - 2), 0, 1),
            np.clip(1.5 - np.abs(4 * h - 1), 0, 1),
        ],
        axis=-1,
    )
    weight = (alpha * np.clip(h * 2.0, 0.0, 1.0))[..., None]
    out = rgb * (1 - weight) + 255.0 * colour * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
