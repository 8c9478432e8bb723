"""Overlay pictures: each called chromosome outlined in its class colour, others grey."""

import numpy as np
import pandas as pd

from napari_chromosome_sort.display.colours import class_rgb
from napari_chromosome_sort.display.overlays import OTHER_RGB, calls_overlay


def test_outlines_take_the_class_colour():
    image = np.full((40, 60), 200, dtype=np.uint8)
    labels = np.zeros((40, 60), dtype=np.int32)
    labels[5:20, 5:15] = 1
    labels[5:20, 30:40] = 2
    labels[25:35, 45:55] = 3  # not called (e.g. a nucleus)
    calls = pd.DataFrame({"label": [1, 2], "class": ["B", "C"]})
    picture = calls_overlay(image, labels, calls, ["A", "B", "C"])
    colours = class_rgb(["A", "B", "C"])
    assert picture.shape == (40, 60, 3) and picture.dtype == np.uint8
    assert (picture[5, 8] == colours["B"]).all()  # top edge of object 1
    assert (picture[5, 33] == colours["C"]).all()
    assert (picture[25, 50] == OTHER_RGB).all()
    assert (picture[12, 10] == 200).all()  # inside stays the image
    assert (picture[0, 0] == 200).all()
