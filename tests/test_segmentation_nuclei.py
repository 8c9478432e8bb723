"""Large convex objects set aside as clusters are named nuclei; crossings and heaps are not."""

import numpy as np
from skimage.draw import disk, rectangle

from napari_chromosome_sort.segmentation import SegmentationParams
from napari_chromosome_sort.segmentation.nuclei import name_convex_clusters

MEDIAN = 100.0


def _cluster(label: int) -> dict:
    return {"label": label, "status": "cluster", "reason": "too large for one chromosome"}


def _scene():
    labels = np.zeros((200, 300), np.int32)
    labels[disk((60, 60), 40)] = 1  # a round nucleus, ~50x the median
    labels[rectangle((130, 20), extent=(12, 120))] = 2  # two bars crossing: an X
    labels[rectangle((80, 84), extent=(120, 12))] = 2
    labels[disk((60, 250), 8)] = 3  # convex but only ~2x the median
    labels[disk((160, 250), 30)] = 4  # a round object kept as a chromosome
    objects = [_cluster(1), _cluster(2), _cluster(3)]
    objects.append({"label": 4, "status": "chromosome", "reason": "single object"})
    return labels, objects


def test_a_large_convex_cluster_becomes_a_nucleus_with_its_numbers():
    labels, objects = _scene()
    assert name_convex_clusters(labels, objects, MEDIAN, SegmentationParams()) == 1
    nucleus = objects[0]
    assert nucleus["status"] == "nucleus"
    area = int((labels == 1).sum())
    assert f"{area} px" in nucleus["reason"] and f"{area / MEDIAN:.1f}x" in nucleus["reason"]


def test_crossings_small_blobs_and_kept_objects_keep_their_status():
    labels, objects = _scene()
    name_convex_clusters(labels, objects, MEDIAN, SegmentationParams())
    assert [o["status"] for o in objects[1:]] == ["cluster", "cluster", "chromosome"]


def test_the_thresholds_are_the_knobs():
    labels, objects = _scene()
    strict = SegmentationParams(nucleus_convex_area_factor=1000.0)
    assert name_convex_clusters(labels, objects, MEDIAN, strict) == 0
    assert objects[0]["status"] == "cluster"


def test_on_real_dapi_spreads_the_named_nuclei_hold_no_chromosome(dapi_dir):
    # two spreads of two probe kits, each with nuclei the size rule sets aside as clusters
    from validation.data import read_dapi_pair

    from napari_chromosome_sort.segmentation import segment_spread

    named = 0
    for stem in ("A220144", "V250153"):
        found = sorted(dapi_dir.glob(f"*/{stem}D.tif"))
        if not found:
            continue
        image, truth = read_dapi_pair(found[0], found[0].with_name(f"{stem}K.tif"))
        seg = segment_spread(image)
        for label in seg.objects.label[seg.objects.reason.str.startswith("large and convex")]:
            named += 1
            assert (truth[seg.labels == label] > 0).mean() < 0.05, (stem, label)
    assert named >= 4
