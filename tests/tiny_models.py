"""A tiny classifier for the tests: trained on synthetic crops, random weights (no network)."""

from __future__ import annotations

from pathlib import Path


def train_tiny_model(root: Path):
    """A small model trained on 6 synthetic crops per class, written under ``root / "crops"``."""
    from napari_chromosome_sort import synthetic
    from napari_chromosome_sort.classification.training import TrainingConfig, train_from_folder
    from napari_chromosome_sort.progress import run_to_end

    folder = synthetic.make_crop_dataset(root / "crops", n_per_class=6, seed=1, size=48)
    config = TrainingConfig(weights="random", input_size=64, views=1, inner_folds=2, max_iter=50)
    return run_to_end(train_from_folder(folder, config))
