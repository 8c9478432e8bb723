"""A segmentation model of the user's lab, learned from corrected spreads.

Four things are learned from spreads with truth boxes (:mod:`.truth`):

1. **Settings**: the object threshold, the grow-back level and how wide paired sister chromatids
   may be (``peak_fraction``, ``grow_fraction``, ``pair_max_width_ratio`` of
   :class:`.SegmentationParams`) chosen from :data:`SETTING_GRID` by the truth boxes found on the
   training spreads (ties go to the shipped defaults; from several spreads the gain must hold on
   spreads the choice was not made on).
2. **An object classifier**: a standardised logistic regression over the candidate objects of the
   segmentation with those settings. Its features (:data:`FEATURES`) are the shape and intensity
   measures of the objects table made relative to the spread (area and intensity over the
   spread's median chromosome), so that they carry over to other spreads, and the status the
   rules gave. Target: the object's box matches a truth box at IoU >= 0.5 (one-to-one). It
   judges only objects of the statuses the rules gave on the training spreads
   (``SegmentationModel.statuses``): an object of a status it never saw (debris, say, when the
   training spreads had none) keeps the rules' status, since nothing in the training shows when
   the rules are wrong about it. The classifier decides at all only when it does clearly better
   than the rules on the training spreads, each spread judged by a classifier learned from the
   others (:func:`classifier_gain`); otherwise the rules decide and the model only splits.
3. **Splits of touching chromosomes**: the rules only try to split objects larger than
   ``cluster_area_factor`` x the median; two chromosomes touching end to end or side by side are
   often smaller. Every kept object of at least :data:`SPLIT_MIN_AREA` x the median that the
   watershed of :mod:`.splitting` cuts into chromosome-sized pieces offers that split
   (:func:`propose_splits`). A second logistic regression (:data:`SPLIT_FEATURES`: the whole
   object's size and solidity, its pieces' solidity, balance and number) learns whether the
   pieces match more truth boxes than the whole. It is learned only when the training spreads
   hold at least :data:`MIN_SPLIT_EXAMPLES` such right splits and its splits gain at least
   :data:`SPLIT_MARGIN` boxes on training spreads it did not learn from (:func:`split_gain`);
   otherwise the model never splits.
   A split is taken when its probability is >= 0.5 and every piece passes the object classifier.
4. **Which neighbouring parts are one chromosome** (:mod:`.pairs`): a third logistic
   regression over pairs of parts of kept objects (sister chromatids the rules paired, or did
   not), learned from the spreads of one kind (with separated sister chromatids, or without)
   and used only on spreads of that kind, only when regrouping with it gains at least
   :func:`settings_margin` boxes on training spreads (folds) it did not learn from.

Settings move away from the defaults, and the classifier replaces the rules' decision, only for a
clear gain on the training spreads (:func:`choose_settings`, :func:`classifier_gain`).

Applied, objects with probability >= the model's threshold become ``chromosome`` (reason
``learned: p=0.93``); the others keep their status, or, if the rules had kept them, become
``debris`` (smaller than the typical chromosome) or ``cluster``.
:func:`least_sure_first` orders a segmentation's objects by the model's uncertainty, for review,
and :func:`compare_with_rules` lists what the model changed against the rules alone.

A spread the user reviewed (kept, rejected, painted objects) is training data as it stands
(:func:`reviewed_spread`, the same truth as a corrected ``chromosort segment`` folder given to
``--truth``); a :class:`LearningSession` gathers such spreads and learns from all of them.

The model file is JSON (no pickle): the format, feature names, numbers, settings and the names of
the spreads it learned from. Reading checks all of it.

The modules, one job each: ``model`` (the model and its file), ``features``
(object and split features), ``candidates`` (the rules' segmentation and the splits it
offers), ``training`` (settings choice, the classifiers, held-out gains),
``apply`` (the model on a spread), ``review`` (probabilities, review order, what
the model changed), ``session`` (spreads reviewed in napari); this module gathers their
API.
"""

from napari_chromosome_sort.segmentation.learned.apply import apply_model, segment_with_model
from napari_chromosome_sort.segmentation.learned.candidates import (
    SPLIT_MIN_AREA,
    Candidates,
    SplitOption,
    candidates,
    propose_splits,
)
from napari_chromosome_sort.segmentation.learned.features import (
    FEATURES,
    PRIOR_STATUSES,
    SPLIT_FEATURES,
    object_features,
    split_features,
)
from napari_chromosome_sort.segmentation.learned.model import (
    MODEL_FORMAT,
    READ_FORMATS,
    SETTING_GRID,
    SegmentationModel,
    describe_model,
    load_segmentation_model,
)
from napari_chromosome_sort.segmentation.learned.review import (
    P_COLUMN,
    ModelChanges,
    compare_with_rules,
    least_sure_first,
    model_probabilities,
)
from napari_chromosome_sort.segmentation.learned.session import LearningSession, reviewed_spread
from napari_chromosome_sort.segmentation.learned.training import (
    CHECK_FOLDS,
    MIN_PAIR_EXAMPLES,
    MIN_SPLIT_EXAMPLES,
    SETTINGS_MARGIN,
    SPLIT_MARGIN,
    Segmenter,
    TrainingSpread,
    choose_settings,
    classifier_gain,
    learn_segmentation,
    settings_margin,
    split_gain,
)

__all__ = [
    "CHECK_FOLDS",
    "FEATURES",
    "MIN_PAIR_EXAMPLES",
    "MIN_SPLIT_EXAMPLES",
    "MODEL_FORMAT",
    "PRIOR_STATUSES",
    "P_COLUMN",
    "READ_FORMATS",
    "SETTINGS_MARGIN",
    "SETTING_GRID",
    "SPLIT_FEATURES",
    "SPLIT_MARGIN",
    "SPLIT_MIN_AREA",
    "Candidates",
    "LearningSession",
    "ModelChanges",
    "SegmentationModel",
    "Segmenter",
    "SplitOption",
    "TrainingSpread",
    "apply_model",
    "candidates",
    "choose_settings",
    "classifier_gain",
    "compare_with_rules",
    "describe_model",
    "learn_segmentation",
    "least_sure_first",
    "load_segmentation_model",
    "model_probabilities",
    "object_features",
    "propose_splits",
    "reviewed_spread",
    "segment_with_model",
    "settings_margin",
    "split_features",
    "split_gain",
]
