"""Reading spreads and crops; grey conversion; polarity (dark-on-light vs bright-on-dark).

Qt-free. Every user-facing failure raises :class:`ChromosortError` with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_chromosome_sort.errors import ChromosortError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""File endings read as images when scanning folders."""

POLARITIES = ("dark_on_light", "bright_on_dark")

_TIFF_SUFFIXES = (".tif", ".tiff")

MAX_PIXELS = 100_000_000
"""Largest image read (pixels per plane, e.g. 10 000 x 10 000); a larger one is refused before
it is decoded, since segmenting it would exhaust the memory of a typical workstation."""


def check_pixel_count(shape, what: str = "image") -> None:
    """Refuse an image of ``shape`` (height, width, ...) above :data:`MAX_PIXELS` pixels."""
    h, w = int(shape[0]), int(shape[1])
    if h * w > MAX_PIXELS:
        raise ChromosortError(_too_large(what, f"{w} x {h} pixels"))


def _too_large(what: str, size: str) -> str:
    return (
        f"{what} is {size}; at most {MAX_PIXELS // 1_000_000} million pixels are read "
        "(crop or downscale it, or split it into tiles)"
    )


def _tiff_planes(tif) -> tuple[object, tuple[int, ...]]:
    """The TIFF object to read and the image shape: a series that tifffile stored as one page per
    row (an H x W x C array written without photometric tags) is read whole, not as page 0."""
    page, series = tif.pages[0], tif.series[0]
    shape = tuple(series.shape)
    rows_as_pages = (
        len(page.shape) == 2
        and len(shape) == 3
        and shape[1:] == tuple(page.shape)
        and page.shape[-1] <= 4
        and shape[0] > 4
    )
    return (series, shape) if rows_as_pages else (page, tuple(page.shape))


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        source, shape = _tiff_planes(tif)
        check_pixel_count(shape, f"image {path.name}")
        colormap = tif.pages[0].colormap
        data = source.asarray()
    if colormap is not None and data.ndim == 2 and np.issubdtype(data.dtype, np.integer):
        cmap = np.asarray(colormap)
        if cmap.ndim == 2 and cmap.shape[0] == 3:
            cmap = cmap.T
        cmap = cmap.astype(np.int64)
        if cmap.max() > 255:  # 16-bit TIFF colormap: v stored as v*256 or v*257
            cmap = cmap // 256
        cmap = np.clip(cmap, 0, 255).astype(np.uint8)
        if np.array_equal(cmap[:, 0], cmap[:, 1]) and np.array_equal(cmap[:, 0], cmap[:, 2]):
            lut = cmap[:, 0]
            if np.array_equal(lut[: min(256, len(lut))], np.arange(min(256, len(lut)))):
                return data  # identity grey palette: keep the raw values
            return lut[np.clip(data, 0, len(lut) - 1)]
        return cmap[np.clip(data, 0, len(cmap) - 1)]
    return data


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        opened = Image.open(path)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours
        raise ChromosortError(_too_large(f"image {path.name}", "far too large")) from None
    with opened as img:
        check_pixel_count(img.size[::-1], f"image {path.name}")
        img.load()
        if img.mode == "P":
            palette = img.getpalette() or []
            pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
            raw = np.asarray(img)
            if "transparency" in img.info:
                img = img.convert("RGBA")
                return np.asarray(img)
            if (
                len(pal)
                and np.array_equal(pal[:, 0], pal[:, 1])
                and np.array_equal(pal[:, 0], pal[:, 2])
            ):
                lut = pal[:, 0]
                n = len(lut)
                if np.array_equal(lut, np.arange(n, dtype=np.uint8)[:n]):
                    return raw
                return lut[np.clip(raw, 0, n - 1)]
            return np.asarray(img.convert("RGB"))
        if img.mode in ("1",):
            return np.asarray(img.convert("L"))
        if img.mode in ("LA", "PA"):
            return np.asarray(img.convert("RGBA"))[..., 0]
        if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            return np.asarray(img.convert("RGB"))
        if img.mode.startswith("I;16"):
            return np.asarray(img).astype(np.uint16)
        return np.asarray(img)


def _check_array(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool or image.dtype.kind in "cOUSVMm":
        raise ChromosortError(
            f"{what} has unsupported data type {image.dtype}; expected integer or float pixels"
        )
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] not in (3, 4) and image.shape[-1] < 8:
        raise ChromosortError(
            f"{what} has {image.shape[-1]} channels (shape {image.shape}); expected grey or "
            "RGB(A): save the channel to analyse as a grey image"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ChromosortError(
            f"{what} has shape {image.shape}; expected a 2-D grey image or HxWx3/HxWx4 colour image"
        )
    if image.size == 0 or min(image.shape[:2]) < 2:
        raise ChromosortError(f"{what} is empty (shape {image.shape})")
    check_pixel_count(image.shape, what)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        image = _fill_non_finite(image, what)
    return image


def _fill_non_finite(image: np.ndarray, what: str) -> np.ndarray:
    """NaN / infinite pixels (no measurement) set to the median of the finite ones, the
    background level in a spread, so that they form no objects."""
    finite = np.isfinite(image)
    if not finite.any():
        raise ChromosortError(f"{what} has no finite pixel values (all NaN or infinite)")
    out = image.copy()
    out[~finite] = np.median(image[finite])
    return out


def require_contrast(image, what: str = "image") -> None:
    """Refuse an image whose pixels all have one value: there is nothing to segment in it."""
    image = np.asarray(image)
    if image.size and float(image.min()) == float(image.max()):
        raise ChromosortError(
            f"{what} is uniform (every pixel is {image.flat[0]}): nothing to segment"
        )


def read_image(path) -> np.ndarray:
    """Read a spread or crop: 2-D grey (any dtype) or HxWx3 RGB (alpha dropped).

    Palette images are expanded (grey palettes to 2-D grey). Raises ChromosortError for a
    missing/unreadable file, an empty image, or an unsupported dtype/shape.
    """
    path = Path(path)
    if not path.exists():
        raise ChromosortError(f"image file not found: {path}")
    if path.is_dir():
        raise ChromosortError(f"expected an image file, got a folder: {path}")
    data = None
    errors = []
    readers = (
        (_read_tiff, _read_pil)
        if path.suffix.lower() in _TIFF_SUFFIXES
        else (_read_pil, _read_tiff)
    )
    for reader in readers:
        try:
            data = reader(path)
            break
        except ChromosortError:
            raise  # too large: the next reader must not decode it either
        except Exception as error:  # noqa: BLE001 - try the next reader
            errors.append(f"{type(error).__name__}: {error}")
    if data is None:
        try:
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
        except Exception as error:  # noqa: BLE001
            errors.append(f"{type(error).__name__}: {error}")
            raise ChromosortError(
                f"cannot read image {path.name}: not a readable image file ({errors[0]})"
            ) from None
    # multi-page / z-stacks: take the first plane
    while data.ndim > 3 or (
        data.ndim == 3 and data.shape[-1] not in (1, 3, 4) and data.shape[0] < data.shape[-1]
    ):
        data = data[0]
    return _check_array(data, what=f"image {path.name}")


def to_gray(image) -> np.ndarray:
    """Any grey/RGB(A) image of any numeric dtype -> float32 HxW in [0, 1].

    8- and 16-bit integers are scaled by their type's range; wider integers (32/64-bit, whose
    range dwarfs any camera's) and floats outside [0, 1] by the image's own minimum and maximum.
    """
    image = _check_array(image)
    if image.dtype.kind in "ui" and image.dtype.itemsize <= 2:
        info = np.iinfo(image.dtype)
        scale_lo, scale_hi = float(info.min), float(info.max)
        img = image.astype(np.float32)
    else:
        img = image.astype(np.float32)
        lo, hi = float(img.min()), float(img.max())
        if lo >= 0.0 and hi <= 1.0:
            scale_lo, scale_hi = 0.0, 1.0
        else:
            scale_lo, scale_hi = lo, hi if hi > lo else lo + 1.0
    if img.ndim == 3:
        img = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    gray = (img - scale_lo) / (scale_hi - scale_lo)
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


FIELD_MIN_SIZE = 256  # px: images at least this large on both sides are fields of view


def _tile_background(gray: np.ndarray, blocks: int = 8) -> np.ndarray:
    """The image's local background level: the median of each of ``blocks`` x ``blocks`` tiles
    (robust to the objects in a tile), interpolated back to full size."""
    from scipy import ndimage as ndi

    h, w = gray.shape
    by, bx = max(1, h // blocks), max(1, w // blocks)
    ny, nx = h // by, w // bx
    tiles = gray[: ny * by, : nx * bx].reshape(ny, by, nx, bx)
    medians = np.median(tiles, axis=(1, 3))
    return ndi.zoom(medians, (h / ny, w / nx), order=1, mode="nearest", grid_mode=True)


def detect_polarity(image) -> str:
    """``"dark_on_light"`` (bright-field, Giemsa) or ``"bright_on_dark"`` (fluorescence, DAPI).

    The background is the most common grey level (mode of a smoothed histogram; in a field of
    view of at least :data:`FIELD_MIN_SIZE` px, of the grey levels minus the local background,
    which makes it indifferent to uneven illumination). Objects lie in the longer tail away from
    it: if the mass far below the background exceeds the mass far above, objects are dark on a
    light background.
    """
    gray = (
        image
        if (np.asarray(image).ndim == 2 and np.asarray(image).dtype == np.float32)
        else to_gray(image)
    )
    gray = np.asarray(gray, dtype=np.float32)
    step = max(1, int(np.sqrt(gray.size / 250_000)))
    sample = gray[::step, ::step]
    if min(sample.shape) >= FIELD_MIN_SIZE:
        # a field of view: grey levels relative to the local background, so that uneven
        # illumination does not spread the background over the histogram; a crop (smaller,
        # mostly object) has no background to take the tiles' median of
        sample = sample - _tile_background(sample)
    sample = sample.ravel()
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi - lo < 1e-6:
        return "dark_on_light" if float(np.median(sample)) > 0.5 else "bright_on_dark"
    hist, edges = np.histogram(sample, bins=128, range=(lo, hi))
    kernel = np.ones(5) / 5.0
    hist = np.convolve(hist, kernel, mode="same")
    background = 0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1])
    spread = hi - lo
    margin = 0.15 * spread
    below = sample < background - margin
    above = sample > background + margin
    mass_below = float(np.sum(background - sample[below]))
    mass_above = float(np.sum(sample[above] - background))
    if mass_below == mass_above:
        return "dark_on_light" if background > 0.5 else "bright_on_dark"
    return "dark_on_light" if mass_below > mass_above else "bright_on_dark"


def chromosome_signal(image, polarity: str | None = None) -> np.ndarray:
    """float32 HxW in [0, 1] where chromosomes are bright (polarity detected when None).

    For dark-on-light colour images (Giemsa) the darkness is taken from the channel mix that
    best separates stain from background (the mean of RGB darkness, which keeps all stain
    colours); values are stretched between robust background and object levels.
    """
    gray = to_gray(image)
    if polarity is None:
        polarity = detect_polarity(gray)
    if polarity not in POLARITIES:
        raise ChromosortError(
            f"unknown polarity {polarity!r}; expected one of {', '.join(POLARITIES)}"
        )
    signal = 1.0 - gray if polarity == "dark_on_light" else gray
    step = max(1, int(np.sqrt(signal.size / 250_000)))
    lo, hi = np.percentile(signal[::step, ::step], [0.5, 99.9])
    if hi - lo < 1e-6:
        return np.zeros_like(signal, dtype=np.float32)
    return np.clip((signal - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
