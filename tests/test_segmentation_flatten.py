"""Uneven stain: a fluorescence spread whose chromosomes are several times dimmer on one side."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation import SegmentationParams, segment_spread
from napari_chromosome_sort.segmentation.flatten import brightness_field, flatten_on
from napari_chromosome_sort.synthetic import make_spread


def _whole(spread, seg) -> int:
    """Truth chromosomes kept as one object that matches them (IoU >= 0.5)."""
    kept = set(seg.kept_labels())
    n = 0
    for label in spread.truth.label[spread.truth.kind == "chromosome"]:
        mask = spread.truth_labels == label
        ids, counts = np.unique(seg.labels[mask], return_counts=True)
        for obj, inter in zip(ids, counts, strict=True):
            union = mask.sum() + (seg.labels == obj).sum() - inter
            if obj in kept and inter / union >= 0.5:
                n += 1
                break
    return n


def _dimmed(image: np.ndarray, factor: float) -> np.ndarray:
    """The spread with its stain fading from 1x (left) to ``factor`` x (right)."""
    grey = image.astype(float).mean(-1) if image.ndim == 3 else image.astype(float)
    floor = np.percentile(grey, 5)
    ramp = np.linspace(1.0, factor, grey.shape[1])[None, :]
    return (floor + (grey - floor) * ramp).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def faded():
    spread = make_spread(seed=3, modality="dapi", n_chromosomes=30, n_clusters=0, n_debris=0)
    return spread, _dimmed(spread.image, 0.15)


def test_a_faded_side_is_found_like_an_even_spread(faded):
    spread, image = faded
    even = _whole(spread, segment_spread(spread.image))
    flat = _whole(spread, segment_spread(image))
    plain = _whole(spread, segment_spread(image, SegmentationParams(flatten_brightness="off")))
    assert flat >= even - 2
    assert plain < flat - 3  # without the field the dim side is lost


def test_the_field_follows_the_fade(faded):
    from napari_chromosome_sort.segmentation.pipeline import _corrected_signal

    spread, image = faded
    params = SegmentationParams(flatten_brightness="off")
    _, corrected, noise, _ = _corrected_signal(image, params)
    field = brightness_field(corrected, noise, params)
    assert field is not None and field.shape == corrected.shape
    left, right = field[:, : field.shape[1] // 5].mean(), field[:, -field.shape[1] // 5 :].mean()
    assert left > 2 * right


def test_auto_is_fluorescence_only_and_blank_images_pass():
    auto = SegmentationParams()
    assert flatten_on(auto, "bright_on_dark") and not flatten_on(auto, "dark_on_light")
    assert flatten_on(replace(auto, flatten_brightness="on"), "dark_on_light")
    assert not flatten_on(replace(auto, flatten_brightness="off"), "bright_on_dark")
    blank = np.zeros((64, 64), np.uint8)
    assert brightness_field(blank.astype(np.float32), 0.01, auto) is None
    assert len(segment_spread(blank, replace(auto, polarity="bright_on_dark")).kept_labels()) == 0


@pytest.mark.parametrize("change", [{"flatten_brightness": "sometimes"}, {"flatten_scale": 0.0}])
def test_bad_flatten_knobs_are_named(change):
    with pytest.raises(ChromosortError, match=next(iter(change))):
        segment_spread(np.zeros((32, 32), np.uint8), SegmentationParams(**change))


def test_the_slide_out_choice_never_looks_at_the_slide_it_judges():
    import pandas as pd
    from validation.dapi_flatten import slide_out_choice

    def table(found: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "slide": ["s1", "s2", "s3"],
                "spread": ["a", "b", "c"],
                "found": found,
                "overlap_kept": [0, 0, 0],
            }
        )

    # "on" wins on s1 and s2 by a little and loses s3 by a lot
    chosen = slide_out_choice({"off": table([10, 10, 10]), "on": table([12, 12, 1])})
    picks = dict(zip(chosen["slide"], chosen["chosen"], strict=True))
    # s3 is judged with what s1 + s2 choose ("on"), though "off" is better on s3 itself
    assert picks == {"s1": "off", "s2": "off", "s3": "on"}
    assert chosen.set_index("slide").loc["s3", "found"] == 1
