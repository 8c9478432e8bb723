"""Training a classifier and telling the user how far to trust it.

* :mod:`.folders`: a folder-per-class set of crops as training data, and the quick check
  before any network runs;
* :mod:`.classifier`: a whole classifier trained: cached features of every crop, the head,
  optional fine-tuning (:mod:`.finetune`);
* :mod:`.head`: the head on cached features (Ikemoto et al. 2022's mode): its design chosen
  (:mod:`.search`, the result kept by :mod:`.memo`), then refitted on every crop;
* :mod:`.spread_design`: the head's design chosen leave-one-spread-out on a lab's own crops;
* :mod:`.spread_priors`: whether prediction re-estimates each spread's class mix, chosen the
  same way and recorded in the model;
* :mod:`.crossval`: outer cross-validation of the whole head training on cached features;
* :mod:`.last_blocks`: the last backbone blocks tuned on cached activations of the frozen rest;
* :mod:`.corrections`: retraining after calls corrected by hand (the correction loop);
* :mod:`.checks`: warnings a trained model's numbers support.

The public names below are imported on first use (:pep:`562`), so importing this package
loads neither torch nor scikit-learn.
"""

from napari_chromosome_sort._lazy import lazy_exports

_EXPORTS = {
    "TrainingConfig": "napari_chromosome_sort.classification.config",
    "scan_folder": ".folders",
    "check_folder": ".folders",
    "empty_classes": ".folders",
    "train_classifier": ".classifier",
    "train_from_folder": ".classifier",
    "candidate_features": ".classifier",
    "train_head": ".head",
    "crossvalidate_features": ".crossval",
    "crossvalidate_folder": ".crossval",
    "spread_groups": ".spread_design",
    "CorrectionSession": ".corrections",
    "training_warnings": ".checks",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
