"""The knobs of training (:class:`TrainingConfig`), without torch: the CLI and the training
widget build their options from it, :mod:`.training.head` and :mod:`.models.heads` read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from napari_chromosome_sort.fields import option

GEOMETRIES = ("pad", "stretch", "canvas")
APPEARANCES = ("canonical", "plain")
FEATURE_SETS = ("all", "all_avg", "last", "last_avg")


@dataclass
class TrainingConfig:
    """Every knob of training. A field left at None is chosen by inner cross-validation on the
    training crops from its ``*_grid`` (docs/validation.md); setting it fixes it.

    The ``help`` of a field (its field metadata, see :func:`..fields.option`) is what the
    training widget shows the user; the comments are for developers."""

    backbone: str = "squeezenet1_1"  # a name in registry.BACKBONES
    weights: str | None = None  # None/"imagenet" | path | "random"
    # network input side (px); None = from preprocessing_grid
    input_size: int | None = option(
        None,
        "Size (px) each crop is scaled to before the network sees it; auto tries a few sizes on "
        "your crops and keeps the best (fixing one makes training faster)",
        advanced=False,
    )
    # None = from preprocessing_grid
    geometry: str | None = option(
        None,
        "How a crop is made square: pad with background (keeps the shape), stretch, or canvas "
        "(keeps the true chromosome size); auto: chosen on your crops",
        choices=GEOMETRIES,
    )
    # candidate (input size, geometry) pairs; each costs one feature extraction. 160 px was
    # never chosen in the nested cross-validation of the WT crops (docs/performance.md)
    preprocessing_grid: tuple[tuple[int, str], ...] = ((224, "pad"), (224, "stretch"))
    scale: float = option(1.0, "Pixel scale used by the 'canvas' geometry (1 = as imaged)")
    appearance: str = option(
        "canonical",
        "canonical: crops are normalised to dark chromosomes on a light background (Giemsa and "
        "DAPI alike); plain: as imaged",
        choices=APPEARANCES,
    )
    # dihedral views of the training features (and of the inner-CV predictions): the four
    # rotations are as accurate as all eight in the nested CV of the WT crops, at half the cost
    views: int = option(
        4,
        "How many rotated/mirrored copies of each crop the classifier learns from (1-8): 4, "
        "the four rotations, was as accurate as 8 on the published crops; costs training time "
        "only",
        advanced=False,
    )
    # views averaged at prediction, recorded in the model file (metadata "prediction_views")
    predict_views: int = option(
        4,
        "How many rotated copies of each crop are averaged when the model classifies (1-8): 4 "
        "(the four rotations) is as accurate as 8 and twice as fast",
    )
    # 0 = linear head, else MLP hidden units
    hidden: int = option(
        0,
        "0 = a simple (linear) classifier, the robust choice for a few hundred crops; a number = "
        "a small neural network with that many units",
    )
    dropout: float = option(
        0.0, "Random switching-off of units while training the small network (0 = none)"
    )
    # pooled layers (backbones.FEATURE_SETS); None = from feature_set_grid
    feature_set: str | None = option(
        None,
        "Which network layers describe a crop (fine detail to overall shape); auto: chosen on "
        "your crops",
        choices=FEATURE_SETS,
    )
    feature_set_grid: tuple[str, ...] = FEATURE_SETS
    # principal components for a linear head (0 = no PCA); None = from pca_grid
    pca: int | None = option(
        None, "Number of summary measures kept per crop (0 = all); auto: chosen on your crops"
    )
    pca_grid: tuple[int, ...] = (128, 256)
    # L2 strength; None = from l2_grid
    l2: float | None = option(
        None,
        "How strongly the classifier is kept simple (larger = simpler, fewer surprises on new "
        "spreads); auto: chosen on your crops",
    )
    l2_grid: tuple[float, ...] = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
    # "best" (one design by inner CV) | "ensemble" (average all designs)
    combine: str = option(
        "best",
        "best: the single best setting on your crops; ensemble: an average of all settings",
        choices=("best", "ensemble"),
    )
    # beside a reference set, with own crops that record their spread (manifest "source"): the
    # design chosen leave-one-spread-out. Off: in the own-labels validation 0.768 pooled against
    # 0.754, the worst spread one chromosome better (docs/validation.md), 3 x the fitting time
    design_by_spread: bool = option(
        False,
        "Beside a reference set, when your crops record the spread they came from (3 or more "
        "spreads): choose the settings by holding out one spread at a time, as a new spread "
        "will be read",
    )
    # inner-CV criterion
    select_by: str = option(
        "log_loss",
        "How settings are compared on your crops: confidence (log_loss) or plain accuracy",
        choices=("log_loss", "accuracy"),
    )
    inner_folds: int = option(
        3,
        "Parts your crops are split into to choose the settings (each part is held out once)",
    )
    # repeats of the inner CV (new partitions), averaged
    inner_repeats: int = option(
        1, "How often that split is redone with other parts (more = steadier, slower)"
    )
    # refit a linear head with L2 x (inner training size / training size): the penalty is on the
    # mean loss, so this keeps the prior strength per crop that the inner CV validated
    rescale_l2: bool = option(
        True, "Keep the simplicity setting right when the final model sees all crops"
    )
    class_balance: bool = option(
        True, "Give a rare class as much weight as a common one while training"
    )
    prior_correction: bool = option(
        True,
        "Correct for the class frequencies of the training set (a mutant spread may have other "
        "frequencies)",
    )
    # L-BFGS iterations for a linear head
    max_iter: int = option(200, "Most fitting steps of the simple classifier")
    # Adam epochs for an MLP head (early stopping)
    epochs: int = option(300, "Most passes over the crops when training the small network")
    patience: int = option(
        20, "Stop training the small network after this many passes without improvement"
    )
    lr: float = option(1e-3, "Step size when training the small network")
    batch_size: int = option(256, "Crops per training step")
    val_fraction: float = option(
        0.15, "Share of crops held out to decide when to stop training (0-1)"
    )
    finetune_blocks: int = option(
        0,
        "0 = keep the pretrained network as it is (fast, robust); a number = also retrain its "
        "last blocks on your crops (needs many crops, slow)",
    )
    finetune_epochs: int = option(10, "Passes over the crops when retraining network blocks")
    finetune_lr: float = option(1e-4, "Step size when retraining network blocks")
    seed: int = option(0, "Random seed: the same seed and crops give the same model")
    device: str | None = None  # "cuda" | "mps" | "cpu"; None = the best available
    # features cached on disk: "auto" = features/ in the user cache; a folder; None/"none" = off
    cache_dir: str | None = "auto"

    def preprocessings(self) -> list:
        """Candidate ``features.Preprocessing`` objects (one unless left to inner CV)."""
        # torch (through features): this module stays light for the CLI and the widgets
        from napari_chromosome_sort.classification.features import Preprocessing

        pairs = [
            (size, geometry)
            for size, geometry in self.preprocessing_grid
            if self.input_size in (None, size) and self.geometry in (None, geometry)
        ] or [(self.input_size or 224, self.geometry or "pad")]
        if self.geometry is None and self.appearance == "canonical":
            # canonical crops are square: "stretch" gives the same input as "pad"
            pairs = [(s, g) for s, g in pairs if g != "stretch" or (s, "pad") not in pairs]
        return [
            Preprocessing(
                size=int(size), appearance=self.appearance, geometry=geometry, scale=self.scale
            )
            for size, geometry in dict.fromkeys(pairs)
        ]

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return d
