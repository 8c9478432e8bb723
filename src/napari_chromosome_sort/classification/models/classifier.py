"""The chromosome classifier: a torchvision backbone + a trained head, one ``nn.Module``.

Three head kinds:

* ``"pooled"`` (trained by this package): globally pooled (average and max) features of
  several backbone layers, standardised, then dropout + linear (or a small MLP). Because the
  whole thing is one module, Grad-CAM works through ``cam_layer``.
* ``"squeezenet_conv"`` (Ikemoto et al. (2022)'s published models): SqueezeNet's own classifier,
  dropout + 1x1 conv + ReLU + global average pool.
* ``"avgpool_fc"`` (imported ResNet-style models): global average pool + ``fc``.

The last two reproduce a network's own classifier for ``model_io.import_state_dict``; which one
a backbone has is its ``BackboneSpec.head_kind`` (see :mod:`.registry`).

``preprocess`` reproduces exactly the preprocessing recorded in ``metadata["preprocessing"]``
(canonical appearance or plain, pad/stretch/canvas geometry, input size, normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from napari_chromosome_sort.classification.features import (
    N_VIEWS,
    PREDICT_VIEWS,
    Preprocessing,
    dihedral,
    preprocess,
    preprocess_array,
)
from napari_chromosome_sort.classification.models.backbones import build_backbone, pool_taps
from napari_chromosome_sort.classification.models.fast_inference import onnx_runner
from napari_chromosome_sort.classification.models.model_schema import HEAD_KINDS
from napari_chromosome_sort.errors import ChromosortError


def check_views(views, default: int | None = None) -> int:
    """A number of dihedral views, 1..8; an unusable value is ``default`` if given, else an
    error."""
    try:
        n = int(views)
        ok = n == views and 1 <= n <= N_VIEWS
    except (TypeError, ValueError):
        ok = False
    if ok:
        return n
    if default is not None:
        return default
    raise ChromosortError(f"views must be a whole number from 1 to {N_VIEWS}, got {views!r}")


class PooledHead(nn.Module):
    """Standardise pooled features, then dropout + linear (``hidden == 0``) or a small MLP."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.n_classes, self.hidden, self.dropout_p = (
            in_dim,
            n_classes,
            hidden,
            dropout,
        )
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sigma", torch.ones(in_dim))
        # added to the logits: prior correction fitted after training (zeros = none)
        self.register_buffer("logit_shift", torch.zeros(n_classes))
        self.dropout = nn.Dropout(dropout)
        if hidden:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, n_classes),
            )
        else:
            self.net = nn.Linear(in_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, in_dim) -> logits (N, n_classes), prior shift included."""
        z = (features - self.mu) / self.sigma
        return self.net(self.dropout(z)) + self.logit_shift

    def numpy_logits(self, features: np.ndarray) -> np.ndarray:
        """:meth:`forward` at inference on a numpy batch: in numpy for a linear head (beside
        ONNX Runtime's threads, torch's thread pool costs more than such a small product)."""
        if self.hidden:
            with torch.no_grad():
                return self(torch.from_numpy(features)).numpy()
        weight = self.net.weight.detach().numpy()
        z = (features - self.mu.numpy()) / self.sigma.numpy()
        return z @ weight.T + (self.net.bias.detach().numpy() + self.logit_shift.numpy())


def squeezenet_conv_head(
    n_classes: int, dropout: float = 0.5, in_channels: int = 512
) -> nn.Sequential:
    """torchvision SqueezeNet classifier layout (keys ``1.weight``/``1.bias``)."""
    return nn.Sequential(
        nn.Dropout(p=dropout),
        nn.Conv2d(in_channels, n_classes, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


def avgpool_fc_head(in_channels: int, n_classes: int) -> nn.Sequential:
    """torchvision ResNet classifier layout (keys ``2.weight``/``2.bias`` = ``fc.*``)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(in_channels, n_classes)
    )


class ChromosomeClassifier(nn.Module):
    """Backbone + head with its classes, preprocessing and metadata."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        classes: Sequence[str],
        preprocessing: Preprocessing,
        head_kind: str = "pooled",
        metadata: dict | None = None,
    ):
        super().__init__()
        if head_kind not in HEAD_KINDS:
            raise ChromosortError(f"unknown head kind {head_kind!r}")
        self.backbone = backbone
        self.head = head
        self.classes = [str(c) for c in classes]
        self.head_kind = head_kind
        self.preprocessing = preprocessing
        self.metadata = dict(metadata or {})
        self.metadata.update(self.architecture())

    # ------------------------------------------------------------------ description
    @property
    def backbone_name(self) -> str:
        """Registered name of the backbone."""
        return self.backbone.name

    @property
    def input_size(self) -> int:
        """Side in pixels of the square network input."""
        return self.preprocessing.size

    @property
    def cam_layer(self) -> nn.Module:
        """The backbone layer whose activations Grad-CAM uses."""
        return self.backbone.cam_layer

    def architecture(self) -> dict:
        """Everything needed to rebuild this module before loading its tensors."""
        head = {"kind": self.head_kind}
        if self.head_kind == "avgpool_fc":
            head.update(in_dim=self.head[2].in_features)
        if self.head_kind == "pooled":
            head.update(
                in_dim=self.head.in_dim,
                hidden=self.head.hidden,
                dropout=self.head.dropout_p,
                taps=list(self.backbone.taps),
            )
        return {
            "classes": list(self.classes),
            "backbone": self.backbone_name,
            "input_size": self.input_size,
            "preprocessing": self.preprocessing.to_dict(),
            "head": head,
        }

    @property
    def device(self) -> torch.device:
        """The device holding the parameters."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------ inference
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (N, 3, S, S) -> logits (N, k); one view, no softmax."""
        if self.head_kind == "pooled":
            return self.head(pool_taps(self.backbone.forward_taps(x)))
        return self.head(self.backbone.trunk(x))

    def preprocess(self, images: Sequence) -> torch.Tensor:
        """RGB crops (uint8 HxWx3, any size) -> normalised tensor (N, 3, S, S)."""
        return preprocess(list(images), self.preprocessing)

    @property
    def prediction_views(self) -> int:
        """Dihedral views averaged at prediction: the number the model file records
        (``metadata["prediction_views"]``), else ``PREDICT_VIEWS`` (the four rotations)."""
        return check_views(self.metadata.get("prediction_views", PREDICT_VIEWS), PREDICT_VIEWS)

    @torch.no_grad()
    def predict_proba(
        self,
        images: Sequence,
        tta: bool = True,
        batch_size: int = 16,
        views: int | None = None,
        first_view=None,
    ) -> np.ndarray:
        """Class probabilities (n, k), averaged over ``views`` dihedral views (the first of
        rotations 0/90/180/270, then their mirror images); ``views=None``: the model's
        ``prediction_views`` with ``tta``, one view without. ``first_view``: a function of a
        preprocessed batch (numpy) giving the logits (numpy) of view 0 in place of the network
        (Grad-CAM uses it to compute its terms in the same forward). ``batch_size`` 16: on CPUs
        a batch's activations then stay in the caches (faster than 32 or 64,
        docs/performance.md)."""
        from scipy.special import softmax

        images = list(images)
        k = len(self.classes)
        if not images:
            return np.zeros((0, k), np.float32)
        if views is None:
            views = self.prediction_views if tta else 1
        views = check_views(views)
        was_training = self.training
        self.eval()
        fast = self._numpy_logits(len(images) * views)
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            if fast is not None:  # numpy from end to end: no torch beside ONNX Runtime's threads
                x = preprocess_array(batch, self.preprocessing)
                logits = [(first_view or fast)(x)]
                logits += [fast(dihedral(x, v)) for v in range(1, views)]
                p = sum(softmax(z, axis=1) for z in logits) / views
            else:
                x = self.preprocess(batch).to(self.device)
                first = (
                    torch.from_numpy(first_view(x.cpu().numpy())).to(x.device)
                    if first_view
                    else self(x)
                )
                p = torch.softmax(first, 1)
                p = p + sum(torch.softmax(self(dihedral(x, v)), 1) for v in range(1, views))
                p = (p / views).float().cpu().numpy()
            out.append(np.asarray(p, np.float32))
        self.train(was_training)
        return np.concatenate(out)

    def _numpy_logits(self, forwards: int):
        """The frozen forward (numpy batch in, logits out) in ONNX Runtime when on CPU and worth
        it for ``forwards`` crop views (see :mod:`.fast_inference`); None means: use torch."""
        if self.head_kind == "pooled":
            features = onnx_runner(self.backbone, self.input_size, "pooled-taps", forwards)
            if features is None:
                return None
            return lambda x: self.head.numpy_logits(features(x))
        return onnx_runner(self, self.input_size, f"logits-{self.head_kind}", forwards)

    def fast_logits(self, forwards: int):
        """:meth:`_numpy_logits` for tensors (tensor in, logits tensor out), or None."""
        logits = self._numpy_logits(forwards)
        return None if logits is None else (lambda x: torch.from_numpy(logits(x.numpy())))

    def predict(self, images: Sequence, tta: bool = True, views: int | None = None) -> list[str]:
        """Most probable class name of each crop (see :meth:`predict_proba`)."""
        proba = self.predict_proba(images, tta=tta, views=views)
        return [self.classes[i] for i in proba.argmax(1)]


def build_classifier(architecture: dict, weights="random", metadata: dict | None = None):
    """Rebuild an (untrained) classifier from ``architecture()`` output (no network access)."""
    try:
        classes = list(architecture["classes"])
        backbone_name = architecture["backbone"]
        prep = Preprocessing.from_dict(architecture["preprocessing"])
        head_info = dict(architecture["head"])
        kind = head_info["kind"]
    except (KeyError, TypeError) as error:
        raise ChromosortError(f"model description incomplete: missing {error}") from None
    backbone = build_backbone(backbone_name, weights=weights)
    if kind == "pooled":
        if list(head_info.get("taps", backbone.taps)) != list(backbone.taps):
            raise ChromosortError(
                f"model was made with feature taps {head_info.get('taps')}, this version of "
                f"{backbone_name} uses {list(backbone.taps)}"
            )
        head = PooledHead(
            int(head_info["in_dim"]),
            len(classes),
            int(head_info.get("hidden", 0)),
            float(head_info.get("dropout", 0.0)),
        )
    elif kind == "squeezenet_conv":
        head = squeezenet_conv_head(len(classes), in_channels=backbone.spec.channels[-1])
    elif kind == "avgpool_fc":
        head = avgpool_fc_head(int(head_info["in_dim"]), len(classes))
    else:
        raise ChromosortError(f"unknown head kind {kind!r}")
    return ChromosomeClassifier(backbone, head, classes, prep, kind, metadata)
