"""Segment a metaphase spread into objects, each with a status and a human-readable reason.

Qt-free. The pipeline (:mod:`.pipeline`; every threshold adapts to the image, every knob is in
``SegmentationParams``):

1. ``chromosome_signal`` (objects bright, polarity auto-detected), light smoothing, subtraction of a
   smooth background estimated by a large grey opening on a downsampled copy.
2. A low (Otsu) threshold finds everything stained. Its components give the spread's typical
   object peak intensity; the object threshold is a fraction of that peak ("half maximum"), which
   separates sister chromatids and neighbours far better than Otsu on a blurred image.
3. Nuclei: low-threshold components much larger than the median object and round -> ``nucleus``
   (object pieces inside them are absorbed).
4. Sister-chromatid pairs (type C: two parallel blobs with a gap) are grouped into ONE object by
   proximity, similar size, parallel orientation and side-by-side placement (mutual best match).
5. Sizes relative to the median object: too small -> ``debris``; too large -> optional watershed
   split that is kept only if every piece is chromosome-sized, else ``cluster``.
6. Objects touching the image edge -> ``border``; everything else -> ``chromosome``.
   Objects are grown back to their outline; kept pieces of one chromosome cut at a dark band
   (meeting end to end across a bright contact, into one unbranched rod) are joined.
7. Crossings: a kept single piece that is larger than the median chromosome, not convex, with a
   branched skeleton and a brighter (double-DNA) overlap plateau -> ``cluster``; and kept single
   pieces that meet another kept object along a cut brighter than both (a crossing that step 5
   cut through its overlap; touching neighbours meet in a valley) -> ``cluster``.
8. Fluorescence spreads only (by default): the learned crossing score of each kept single piece
   (:mod:`.learned.crossing_score`, 16 shape measures, relative to the spread's
   typical object) above the model's threshold -> ``cluster``.
9. Crossings resolved: an object set aside as a crossing (or as too large) whose skeleton is an
   X (four ends pairing into two straight paths that cross) or a T becomes two
   ``crossing-resolved`` objects, one per chromosome, sharing the crossing pixels
   (:mod:`.crossings.resolve`; the second half's whole mask in ``Segmentation.crossing_masks``).

The modules, one step each: ``params`` (every knob), ``signal`` (denoising, background,
threshold), ``nuclei``, ``pairing`` (chromatid pairs), ``splitting`` (watershed), ``bands``
(pieces cut at a dark band), ``crossings`` (crossings set aside, and resolved), ``shapes``
(shape measures), ``result`` (the ``Segmentation``), ``edits`` (hand edits), ``truth`` (truth
boxes and masks matched to objects). ``learned/``: what is learned rather than ruled: the
segmentation model of a user's lab (settings, object and split classifiers, chromatid pairs,
learned from corrected spreads) and the crossing score of fluorescence spreads.
"""

from napari_chromosome_sort.segmentation.edits import USER_REASON, measure_labels, reconcile_objects
from napari_chromosome_sort.segmentation.learned import (
    SegmentationModel,
    learn_segmentation,
    load_segmentation_model,
    segment_with_model,
)
from napari_chromosome_sort.segmentation.params import (
    CROSSING_RESOLVED,
    KEPT,
    OBJECT_COLUMNS,
    REJECTED,
    REVIEW_STATUSES,
    STATUSES,
    SegmentationParams,
    validate_params,
)
from napari_chromosome_sort.segmentation.pipeline import segment_spread
from napari_chromosome_sort.segmentation.result import Segmentation
from napari_chromosome_sort.segmentation.signal import denoise

__all__ = [
    "OBJECT_COLUMNS",
    "STATUSES",
    "KEPT",
    "REJECTED",
    "CROSSING_RESOLVED",
    "REVIEW_STATUSES",
    "USER_REASON",
    "Segmentation",
    "SegmentationModel",
    "SegmentationParams",
    "denoise",
    "learn_segmentation",
    "load_segmentation_model",
    "measure_labels",
    "reconcile_objects",
    "segment_spread",
    "segment_with_model",
    "validate_params",
]
