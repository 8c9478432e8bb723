"""Single-chromosome crops from a labelled spread, with the geometry to map maps back.

Recipe (``docs/crops.md``): take the object's bounding box, grow it by ``margin`` (fraction of
its longer side) on every side and make it square around the box centre; cut that window out
of the image (parts outside the image are padded with the background colour), blank every OTHER
labelled object inside the window to the background colour (as Ikemoto et al. (2022) did), and
optionally resize to ``size``. Fluorescence images (bright on dark) are inverted so that every
crop is dark-on-light like the Giemsa training crops.

:class:`CropGeometry` records the window, so :meth:`CropGeometry.to_image` pastes any crop-sized
map (e.g. a Grad-CAM heatmap) back onto the full image exactly: undo the resize, drop the padding,
add the offset.

The enhancement of Ikemoto et al. (2022) is offered as named steps: :func:`paper_enhance`
(brightness/contrast then gamma) and :func:`normalise_channels` (per-channel mean 64, std 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_chromosome_sort.denoising import denoise_rgb_uint8
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.io import detect_polarity

DEFAULT_MARGIN = 0.2


@dataclass(frozen=True)
class CropGeometry:
    """Square crop window ``[y0, y1) x [x0, x1)`` in full-image pixels (may extend past the
    image edges), resampled to ``size x size``; ``image_shape`` = (H, W) of the full image."""

    y0: int
    x0: int
    y1: int
    x1: int
    size: int
    image_shape: tuple[int, int]

    @property
    def side(self) -> int:
        """Side of the square window in full-image pixels."""
        return self.y1 - self.y0

    def _resize(self, array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        if array.shape[:2] == tuple(shape):
            return array.astype(np.float32, copy=False)
        from skimage.transform import resize

        return resize(
            array.astype(np.float32),
            shape,
            order=1,
            mode="edge",
            anti_aliasing=array.shape[0] > shape[0],
            preserve_range=True,
        ).astype(np.float32)

    def to_image(self, heatmap: np.ndarray) -> np.ndarray:
        """Map a 2-D map covering the crop window (any size) to a float32 map of ``image_shape``
        (0 outside the window): resample to the window side, drop what lies past the image edges
        and paste at the window offset."""
        out = np.zeros(self.image_shape[:2], dtype=np.float32)
        placed = self._placed(heatmap)
        if placed is not None:
            out[placed[0]] = placed[1]
        return out

    def paste_max(self, heatmap: np.ndarray, out: np.ndarray) -> None:
        """``np.maximum(out, self.to_image(heatmap), out=out)`` in place, touching only the
        window: how many crops' maps share one image-sized map."""
        placed = self._placed(heatmap)
        if placed is not None:
            np.maximum(out[placed[0]], placed[1], out=out[placed[0]])

    def _placed(self, heatmap: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """(image slices, the part of the resampled map inside the image) of a 2-D map covering
        the window; None when the window lies outside the image."""
        heatmap = np.asarray(heatmap)
        if heatmap.ndim != 2:
            raise ValueError(f"heatmap must be 2-D, got shape {heatmap.shape}")
        window = self._resize(heatmap, (self.side, self.x1 - self.x0))
        height, width = self.image_shape[:2]
        iy0, ix0 = max(self.y0, 0), max(self.x0, 0)
        iy1, ix1 = min(self.y1, height), min(self.x1, width)
        if not (iy1 > iy0 and ix1 > ix0):
            return None
        part = window[iy0 - self.y0 : iy1 - self.y0, ix0 - self.x0 : ix1 - self.x0]
        return (slice(iy0, iy1), slice(ix0, ix1)), part

    def from_image(self, image_map: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """The inverse of :meth:`to_image`: cut the window out of a full-image map and resample
        it to ``size x size`` (``fill`` outside the image)."""
        window = _cut_window(np.asarray(image_map, dtype=np.float32), self, fill)
        return self._resize(window, (self.size, self.size))


@dataclass
class Crop:
    """One chromosome crop: ``pixels`` uint8 RGB (dark on light), its ``geometry``, the object's
    ``label`` in the segmentation, the ``source`` image name and the ``polarity`` of that image
    (a DAPI crop is inverted to dark on light: only this says it was bright on dark)."""

    pixels: np.ndarray
    geometry: CropGeometry
    label: int = 0
    source: str = ""
    polarity: str = "dark_on_light"


SOURCE_POLARITY_KEY = "chromosort-source-polarity"
"""The PNG text field of a crop file that holds the polarity of the spread it was cut from."""


def crop_png_bytes(pixels: np.ndarray, polarity: str | None = None) -> bytes:
    """A crop as PNG bytes; ``polarity``: the spread's (:attr:`Crop.polarity`), kept in the
    file so that training can tell DAPI crops from Giemsa ones (:func:`crop_source_polarity`)."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if polarity:
        info.add_text(SOURCE_POLARITY_KEY, str(polarity))
    buffer = io.BytesIO()
    Image.fromarray(as_rgb_uint8(pixels)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def crop_source_polarity(path) -> str | None:
    """The polarity of the spread a crop file was cut from, as :func:`crop_png_bytes` wrote
    it; None for any other file (a crop of elsewhere, an unreadable file)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            value = getattr(image, "text", {}).get(SOURCE_POLARITY_KEY)
    except (OSError, ValueError, SyntaxError):
        return None
    return value if value in ("dark_on_light", "bright_on_dark") else None


def _cut_window(image: np.ndarray, geometry: CropGeometry, fill) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` with parts outside the image set to ``fill``."""
    height, width = image.shape[:2]
    shape = (geometry.y1 - geometry.y0, geometry.x1 - geometry.x0) + image.shape[2:]
    out = np.empty(shape, dtype=image.dtype)
    out[...] = fill
    iy0, ix0 = max(geometry.y0, 0), max(geometry.x0, 0)
    iy1, ix1 = min(geometry.y1, height), min(geometry.x1, width)
    if iy1 > iy0 and ix1 > ix0:
        out[iy0 - geometry.y0 : iy1 - geometry.y0, ix0 - geometry.x0 : ix1 - geometry.x0] = image[
            iy0:iy1, ix0:ix1
        ]
    return out


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Grey or RGB(A) image of any dtype -> uint8 HxWx3 (non-uint8 stretched 0.1-99.9 %)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        image = image[..., :3]
    elif image.ndim != 2:
        raise ChromosortError(f"expected a 2-D grey or HxWx3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        data = image.astype(np.float64)
        step = max(1, int(np.sqrt(data.size / 500_000)))
        lo, hi = np.percentile(data[::step, ::step], [0.1, 99.9])
        if hi <= lo:
            hi = lo + 1.0
        image = np.clip((data - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image


def _polarity(image: np.ndarray, polarity: str | None) -> str:
    if polarity is not None:
        if polarity not in ("dark_on_light", "bright_on_dark"):
            raise ChromosortError(
                f"unknown polarity {polarity!r}; expected 'dark_on_light' or 'bright_on_dark'"
            )
        return polarity

    return detect_polarity(image)


def background_colour(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Median RGB of unlabelled pixels (the whole image if none): the blanking colour."""
    step = max(1, int(np.sqrt(labels.size / 250_000)))
    sub = rgb[::step, ::step]
    free = labels[::step, ::step] == 0
    pixels = sub[free] if free.any() else sub.reshape(-1, 3)
    return np.median(pixels.reshape(-1, 3), axis=0).round().astype(np.uint8)


def _local_background(pixels, window_labels, rgb, labels) -> np.ndarray:
    """Median colour of the window's pixels that are >= 3 px from every object (the global
    unlabelled median when the window has too few)."""
    from scipy import ndimage

    free = ndimage.binary_erosion(window_labels == 0, iterations=3)
    if free.sum() >= 50:
        return np.median(pixels[free].reshape(-1, 3), axis=0).round().astype(np.uint8)
    return background_colour(rgb, labels)


def square_window(
    bbox: tuple[int, int, int, int], margin: float = DEFAULT_MARGIN
) -> tuple[int, int, int]:
    """(y0, x0, side) of the square window around ``bbox = (y0, x0, y1, x1)`` with ``margin``
    (fraction of the longer side) on each side."""
    by0, bx0, by1, bx1 = (int(v) for v in bbox)
    extent = max(by1 - by0, bx1 - bx0, 1)
    side = int(round(extent * (1.0 + 2.0 * margin)))
    side = max(side, extent + 2)
    y0 = (by0 + by1 - side) // 2
    x0 = (bx0 + bx1 - side) // 2
    return y0, x0, side


def crop_object(
    image: np.ndarray,
    labels: np.ndarray,
    label: int,
    *,
    margin: float = DEFAULT_MARGIN,
    polarity: str | None = None,
    size: int | None = None,
    source: str = "",
    background: np.ndarray | None = None,
    blank_dilation: int = 2,
    isolate: bool = True,
    denoise: bool = False,
    box: tuple[slice, slice] | None = None,
) -> Crop:
    """Crop object ``label`` of ``labels`` out of ``image`` (see module docstring).

    ``size=None`` keeps the native resolution (the window side); ``background`` overrides the
    blanking colour (RGB, in the crop's dark-on-light polarity; default: the local background).
    Other labelled objects are blanked after a ``blank_dilation``-pixel dilation (their halo),
    never over the object itself; with ``isolate=True`` (default) everything farther than a
    feathered rim of ``max(3, 0.08 * extent)`` px from the object becomes background too.
    ``denoise``: the window is denoised first (non-local means, :mod:`.denoising`); set it for a
    spread that segmentation denoised (``Segmentation.stats["denoised"]``). ``box``: the object's
    slices in ``labels`` when known (``scipy.ndimage.find_objects``), saving a scan of the
    whole label image per object.
    """
    labels = np.asarray(labels)
    if labels.shape != np.asarray(image).shape[:2]:
        raise ChromosortError(
            f"labels shape {labels.shape} does not match the image shape "
            f"{np.asarray(image).shape[:2]}"
        )
    if margin < 0:
        raise ChromosortError(f"margin must be >= 0, got {margin}")
    box = box if box is not None else _object_box(labels, label)
    rgb = as_rgb_uint8(image)
    polarity = _polarity(image, polarity)
    if polarity == "bright_on_dark":
        rgb = 255 - rgb
    bbox = (box[0].start, box[1].start, box[0].stop, box[1].stop)
    y0, x0, side = square_window(bbox, margin)
    out_size = int(size) if size else side
    geometry = CropGeometry(y0, x0, y0 + side, x0 + side, out_size, tuple(labels.shape[:2]))
    pixels = _cut_window(rgb, geometry, 0)
    if denoise:
        pixels = denoise_rgb_uint8(pixels)
    window_labels = _cut_window(labels, geometry, -1)  # -1 = outside the image
    mine = window_labels == label
    if background is None:
        fill = _local_background(pixels, window_labels, rgb, labels)
    else:
        fill = np.asarray(background, np.uint8)
    pixels = _blank_around(pixels, window_labels, mine, fill, blank_dilation, isolate)
    if out_size != side:
        pixels = _resized(pixels, out_size, side)
    return Crop(pixels, geometry, int(label), source, polarity)


def _object_box(labels: np.ndarray, label: int) -> tuple[slice, slice]:
    """The slices of object ``label``'s bounding box in ``labels``."""
    own = labels == label
    if not own.any():
        raise ChromosortError(f"label {label} is not in the label image")
    ys = np.flatnonzero(own.any(axis=1))
    xs = np.flatnonzero(own.any(axis=0))
    return (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))


def _blank_around(pixels, window_labels, mine, fill, blank_dilation: int, isolate: bool):
    """``pixels`` with other objects (dilated by ``blank_dilation``) and the outside of the
    image set to ``fill``; with ``isolate``, everything but the object and a feathered rim."""
    from scipy import ndimage

    others = (window_labels > 0) & ~mine
    if others.any() and blank_dilation > 0:
        others = ndimage.binary_dilation(others, iterations=int(blank_dilation)) & ~mine
    pixels[others | (window_labels < 0)] = fill
    if isolate:
        # keep only the object and a feathered rim around it (its blurred edge); everything
        # else (debris, halos, nuclear haze) becomes background too
        extent = max(int(mine.any(axis=1).sum()), int(mine.any(axis=0).sum()))
        rim = max(3.0, 0.08 * extent)
        distance = ndimage.distance_transform_edt(~mine)
        keep = np.clip((rim + 2.0 - distance) / 2.0, 0.0, 1.0)[..., None]
        pixels = np.rint(keep * pixels + (1.0 - keep) * fill[None, None, :]).astype(np.uint8)
    return pixels


def _resized(pixels: np.ndarray, out_size: int, side: int) -> np.ndarray:
    """A ``side`` x ``side`` crop resized to ``out_size`` (bilinear, uint8)."""
    from skimage.transform import resize

    pixels = resize(
        pixels,
        (out_size, out_size),
        order=1,
        anti_aliasing=out_size < side,
        preserve_range=True,
    )
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def crop_chromosomes(image: np.ndarray, segmentation, **kwargs) -> list[Crop]:
    """Crops of every object with status ``"chromosome"`` of ``segmentation`` (in label order)."""
    objects = segmentation.objects
    kept = objects.loc[objects["status"] == "chromosome", "label"].astype(int).tolist()
    if "polarity" not in kwargs:
        kwargs["polarity"] = getattr(segmentation, "polarity", None)
    kwargs.setdefault("denoise", bool(getattr(segmentation, "stats", {}).get("denoised")))
    rgb = as_rgb_uint8(image)
    polarity = _polarity(image, kwargs.pop("polarity"))
    if polarity == "bright_on_dark":
        rgb = 255 - rgb
    from scipy import ndimage

    boxes = ndimage.find_objects(np.asarray(segmentation.labels))
    crops = [
        crop_object(
            rgb,
            segmentation.labels,
            label,
            polarity="dark_on_light",
            box=boxes[label - 1] if 0 < label <= len(boxes) else None,
            **kwargs,
        )
        for label in kept
    ]
    for crop in crops:
        crop.polarity = polarity  # the spread's, not the inverted window's
    return crops


# --- the enhancement of Ikemoto et al. (2022), as named steps -------------------------------


def paper_enhance(
    rgb: np.ndarray, alpha: float = 3.0, beta: float = 80.0, gamma: float = 3.0
) -> np.ndarray:
    """Brightness/contrast then gamma, per pixel and channel (uint8 in and out):

    ``u = clip(alpha * in + beta, 0, 255)`` (OpenCV ``convertScaleAbs`` semantics), then
    ``out = 255 * (u / 255) ** gamma``. On a raw Giemsa spread (background ~100, chromosome ~40)
    this gives a white background and a dark chromosome, like the published crops.
    """
    data = as_rgb_uint8(rgb).astype(np.float64)
    u = np.clip(alpha * data + beta, 0.0, 255.0)
    out = 255.0 * (u / 255.0) ** gamma
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def normalise_channels(rgb: np.ndarray, mean: float = 64.0, std: float = 16.0) -> np.ndarray:
    """Per-channel standardisation of a crop to ``mean`` and ``std`` (uint8, clipped):
    ``out_c = mean + std * (in_c - mean(in_c)) / std(in_c)`` (a flat channel becomes ``mean``)."""
    data = as_rgb_uint8(rgb).astype(np.float64)
    mu = data.mean(axis=(0, 1), keepdims=True)
    sd = data.std(axis=(0, 1), keepdims=True)
    out = mean + std * (data - mu) / np.where(sd > 1e-9, sd, 1.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def enhance(
    rgb: np.ndarray,
    alpha: float = 3.0,
    beta: float = 80.0,
    gamma: float = 3.0,
    mean: float = 64.0,
    std: float = 16.0,
) -> np.ndarray:
    """The paper's full recipe: :func:`paper_enhance` then :func:`normalise_channels`."""
    return normalise_channels(paper_enhance(rgb, alpha, beta, gamma), mean, std)
