"""Classifying chromosome crops as cohesion types A / B / C.

* :mod:`.config`: the knobs of training (:class:`TrainingConfig`), without torch;
* :mod:`.features`: crops prepared for the network and its cached frozen features over the
  eight dihedral views;
* :mod:`.appearance`: one canonical look for published crops and raw spread crops;
* :mod:`.models`: the classifier as an object (backbone + head) and as one model file;
* :mod:`.training`: the head trained on cached features, cross-validation, corrections;
* :mod:`.predict`: calls for crops or whole spreads (segment -> crop -> classify);
* :mod:`.priors`: label-free adaptation of the class priors to a sample;
* :mod:`.gradcam`: Grad-CAM per crop, pasted onto the spread.

The public names below are imported on first use (:pep:`562`): importing this package does
not import torch.
"""

from napari_chromosome_sort._lazy import lazy_exports

_EXPORTS = {
    "TrainingConfig": ".config",
    "Preprocessing": ".features",
    "extract_features": ".features",
    "read_crop_rgb": ".features",
    "ChromosomeClassifier": ".models.classifier",
    "load_model": ".models.model_io",
    "save_model": ".models.model_io",
    "read_metadata": ".models.model_io",
    "train_classifier": ".training.classifier",
    "train_from_folder": ".training.classifier",
    "crossvalidate_folder": ".training.crossval",
    "PriorOptions": ".predict",
    "SpreadPrediction": ".predict",
    "predict_crops": ".predict",
    "predict_spread": ".predict",
    "adapt_priors": ".priors",
    "spread_gradcam": ".gradcam",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
