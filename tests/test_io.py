"""Reading every input kind, grey conversion, polarity detection and override."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.io import chromosome_signal, detect_polarity, read_image, to_gray
from napari_chromosome_sort.synthetic import make_spread


@pytest.fixture(scope="module")
def giemsa():
    return make_spread(seed=3, n_chromosomes=12, shape=(192, 192), modality="giemsa")


@pytest.fixture(scope="module")
def dapi():
    return make_spread(seed=3, n_chromosomes=12, shape=(192, 192), modality="dapi")


def test_read_8bit_grey_png(tmp_path, dapi):
    path = tmp_path / "g8.png"
    Image.fromarray(dapi.image).save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.ndim == 2
    np.testing.assert_array_equal(image, dapi.image)


def test_read_16bit_grey_tiff(tmp_path, dapi):
    data = dapi.image.astype(np.uint16) * 257
    path = tmp_path / "g16.tif"
    tifffile.imwrite(path, data)
    image = read_image(path)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, data)
    np.testing.assert_allclose(to_gray(image), dapi.image / 255.0, atol=1e-4)


def test_read_16bit_png(tmp_path, dapi):
    data = dapi.image.astype(np.uint16) * 200
    path = tmp_path / "g16.png"
    Image.fromarray(data).save(path)
    image = read_image(path)
    assert image.ndim == 2
    np.testing.assert_array_equal(image.astype(np.uint16), data)


def test_read_palette_tiff_grey_and_colour(tmp_path, dapi):
    h, w = dapi.image.shape
    grey = Image.frombytes("P", (w, h), dapi.image.tobytes())
    grey.putpalette([v for i in range(256) for v in (i, i, i)])
    path = tmp_path / "pal_grey.tif"
    grey.save(path)
    image = read_image(path)
    assert image.ndim == 2
    np.testing.assert_array_equal(image, dapi.image)
    # a grey palette that is not the identity is applied
    inverted = Image.frombytes("P", (w, h), dapi.image.tobytes())
    inverted.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    path = tmp_path / "pal_inv.tif"
    inverted.save(path)
    np.testing.assert_array_equal(read_image(path), 255 - dapi.image)

    colour = Image.frombytes("P", (w, h), dapi.image.tobytes())
    colour.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    path = tmp_path / "pal_colour.png"
    colour.save(path)
    image = read_image(path)
    assert image.shape == dapi.image.shape + (3,)
    np.testing.assert_array_equal(image[..., 0], dapi.image)
    np.testing.assert_array_equal(image[..., 1], 255 - dapi.image)


def test_read_rgb_and_rgba(tmp_path, giemsa):
    rgb_path = tmp_path / "rgb.png"
    Image.fromarray(giemsa.image).save(rgb_path)
    np.testing.assert_array_equal(read_image(rgb_path), giemsa.image)
    rgba = np.dstack([giemsa.image, np.full(giemsa.image.shape[:2], 200, np.uint8)])
    rgba_path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(rgba_path)
    image = read_image(rgba_path)
    assert image.shape == giemsa.image.shape
    np.testing.assert_array_equal(image, giemsa.image)
    jpeg_path = tmp_path / "rgb.jpg"
    Image.fromarray(giemsa.image).save(jpeg_path, quality=95)
    assert read_image(jpeg_path).shape == giemsa.image.shape
    tif_path = tmp_path / "rgb.tif"
    tifffile.imwrite(tif_path, giemsa.image)
    np.testing.assert_array_equal(read_image(tif_path), giemsa.image)


def test_read_float_tiff(tmp_path, dapi):
    data = dapi.image.astype(np.float32) / 255.0
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, data)
    image = read_image(path)
    assert image.dtype == np.float32
    np.testing.assert_allclose(to_gray(image), data, atol=1e-6)
    # floats outside [0, 1] are min-max scaled
    gray = to_gray(data * 1000 - 50)
    assert gray.min() == pytest.approx(0.0) and gray.max() == pytest.approx(1.0)


def test_bad_inputs(tmp_path):
    with pytest.raises(ChromosortError, match="not found"):
        read_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(ChromosortError, match="cannot read"):
        read_image(junk)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(ChromosortError):
        read_image(empty)
    with pytest.raises(ChromosortError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(ChromosortError, match="data type"):
        to_gray(np.zeros((8, 8), complex))
    with pytest.raises(ChromosortError, match="data type"):
        to_gray(np.zeros((8, 8), bool))
    with pytest.raises(ChromosortError, match="shape"):
        to_gray(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ChromosortError, match="shape"):
        to_gray(np.zeros(16, np.uint8))
    with pytest.raises(ChromosortError, match="empty"):
        to_gray(np.zeros((0, 5), np.uint8))
    stack = tmp_path / "cplx.tif"
    tifffile.imwrite(stack, np.zeros((8, 8), np.complex64))
    with pytest.raises(ChromosortError):
        read_image(stack)


def test_to_gray_range_and_dtypes():
    for dtype in (np.uint8, np.uint16, np.int16, np.float64):
        data = (np.arange(64).reshape(8, 8) * 3).astype(dtype)
        gray = to_gray(data)
        assert gray.dtype == np.float32 and gray.shape == (8, 8)
        assert gray.min() >= 0.0 and gray.max() <= 1.0
        assert gray[-1, -1] > gray[0, 0]


def test_polarity_detection(giemsa, dapi):
    assert detect_polarity(giemsa.image) == "dark_on_light"
    assert detect_polarity(dapi.image) == "bright_on_dark"
    # inverting the image flips the answer
    assert detect_polarity(255 - dapi.image) == "dark_on_light"
    assert detect_polarity(255 - giemsa.image) == "bright_on_dark"


def _uneven(image: np.ndarray, falloff: float) -> np.ndarray:
    """``image`` lit unevenly: the light falls by ``falloff`` from left to right."""
    w = image.shape[1]
    gain = 1.0 - falloff * np.arange(w) / (w - 1)
    gain = gain[None, :, None] if image.ndim == 3 else gain[None, :]
    return (image.astype(float) * gain).astype(image.dtype)


def test_polarity_under_uneven_illumination():
    """A lamp that lights one side of the field more than the other spreads the background over
    the histogram; the local background (tile medians) takes the gradient out."""
    for seed in (0, 1):
        giemsa = make_spread(seed=seed, modality="giemsa").image  # 512 x 512: a field of view
        dapi = make_spread(seed=seed, modality="dapi").image
        assert detect_polarity(_uneven(giemsa, 0.5)) == "dark_on_light"
        assert detect_polarity(_uneven(dapi, 0.5)) == "bright_on_dark"


def test_chromosome_signal_objects_bright_and_override(giemsa, dapi):
    for spread in (giemsa, dapi):
        signal = chromosome_signal(spread.image)
        assert signal.dtype == np.float32 and signal.min() >= 0.0 and signal.max() <= 1.0
        chrom = spread.truth_labels > 0
        assert signal[chrom].mean() > signal[~chrom].mean() + 0.2
    forced = chromosome_signal(dapi.image, polarity="dark_on_light")
    assert forced[dapi.truth_labels > 0].mean() < forced[dapi.truth_labels == 0].mean()
    with pytest.raises(ChromosortError, match="polarity"):
        chromosome_signal(dapi.image, polarity="sideways")


def test_real_polarity(giemsa_dir, dapi_dir):
    for path in sorted((giemsa_dir / "images").glob("*.png")):
        assert detect_polarity(read_image(path)) == "dark_on_light"
        assert detect_polarity(_uneven(read_image(path), 0.4)) == "dark_on_light", path.name
    dapi_files = sorted(dapi_dir.glob("*/*D.tif"))[:10]
    assert dapi_files
    for path in dapi_files:
        image = read_image(path)
        assert image.ndim == 2
        assert detect_polarity(image) == "bright_on_dark", path.name
