"""The backbone registry: what each network is, in one :class:`BackboneSpec` entry.

Adding a backbone is one entry in :data:`BACKBONES` (or one :func:`register_backbone` call) plus
its weights: the CLI's ``--backbone`` choices, the training widget, the model-file schema,
:mod:`.backbones` (which builds the module) and ``import-model`` (which reads the network's
published ``state_dict``) all read it from here. This module does not import torch, so the
CLI lists the choices without loading it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision
from napari_chromosome_sort.errors import ChromosortError

HEAD_LAYOUTS = ("squeezenet_conv", "avgpool_fc")
"""Head kinds that reproduce a network's own classifier (see :mod:`.classifier`)."""


def torchvision_network(builder: str) -> Callable[[], Any]:
    """``() -> torchvision.models.<builder>(weights=None)``: the untrained network."""

    def network():
        """The untrained torchvision network."""
        return getattr(import_torchvision().models, builder)(weights=None)

    network.__qualname__ = f"torchvision.models.{builder}"
    return network


@dataclass(frozen=True)
class BackboneSpec:
    """One network: how to build it, which of its layers form the trunk and feed the head, the
    layout of its own classifier (to import its published models) and where its ImageNet
    weights live.

    The trunk is the network's attributes ``trunk``, in order, run as one ``nn.Sequential``
    (a single attribute that is an ``nn.Sequential`` already is used as it is); ``taps``,
    ``cam_index`` and ``blocks`` index that sequence.
    """

    name: str
    network: Callable[[], Any]  # () -> the whole network, untrained (an nn.Module)
    trunk: tuple[str, ...]  # attributes of the network that form the trunk, in order
    taps: tuple[int, ...]  # trunk indices whose outputs are pooled into features
    channels: tuple[int, ...]  # output channels of each tap
    cam_index: int  # trunk index of the classic (single-layer) Grad-CAM layer
    blocks: tuple[int, ...]  # trunk indices of fine-tunable blocks, first to last
    head_kind: str  # head kind of the network's own classifier (one of HEAD_LAYOUTS)
    head_keys: Mapping[str, str]  # its state_dict keys -> the keys of that head module
    url: str | None = None  # download URL of the ImageNet weights (None: none published)
    input_size: int = 224

    @property
    def filename(self) -> str:
        """File name of the ImageNet weights (in $CHROMOSORT_WEIGHTS_DIR or the hub cache)."""
        return (self.url or f"{self.name}.pth").rsplit("/", 1)[-1]

    @property
    def trunk_prefix(self) -> tuple[str, ...]:
        """``state_dict`` key prefixes of the whole network that belong to the trunk."""
        return tuple(f"{attribute}." for attribute in self.trunk)

    def trunk_key(self, key: str) -> str | None:
        """The trunk's ``state_dict`` key of the whole network's ``key`` (None: not trunk)."""
        first, _, rest = key.partition(".")
        if first not in self.trunk or not rest:
            return None
        return rest if len(self.trunk) == 1 else f"{self.trunk.index(first)}.{rest}"


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to :data:`BACKBONES` after checking that its fields agree."""
    if spec.name in BACKBONES:
        raise ChromosortError(f"a backbone named {spec.name!r} is registered already")
    if not spec.trunk:
        raise ChromosortError(f"backbone {spec.name}: the trunk names no layer")
    if not spec.taps or list(spec.taps) != sorted(set(spec.taps)):
        raise ChromosortError(f"backbone {spec.name}: taps must be increasing trunk indices")
    if len(spec.channels) != len(spec.taps):
        raise ChromosortError(f"backbone {spec.name}: one channel count per tap")
    if spec.head_kind not in HEAD_LAYOUTS:
        raise ChromosortError(
            f"backbone {spec.name}: head kind {spec.head_kind!r} is not one of "
            f"{', '.join(HEAD_LAYOUTS)}"
        )
    BACKBONES[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    """The registered :class:`BackboneSpec` named ``name`` (an error naming the choices if none)."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ChromosortError(
            f"unknown backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}"
        ) from None


register_backbone(
    BackboneSpec(
        name="squeezenet1_1",
        network=torchvision_network("squeezenet1_1"),
        trunk=("features",),
        # Fire modules 3,4 | 6,7 | 9..12 (after each of the three poolings)
        taps=(4, 7, 9, 10, 11, 12),
        channels=(128, 256, 384, 384, 512, 512),
        cam_index=12,
        blocks=(3, 4, 6, 7, 9, 10, 11, 12),
        # dropout, 1x1 conv (classifier.1), ReLU, global average pool
        head_kind="squeezenet_conv",
        head_keys={"classifier.1.weight": "1.weight", "classifier.1.bias": "1.bias"},
        url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    )
)
register_backbone(
    BackboneSpec(
        name="resnet18",
        network=torchvision_network("resnet18"),
        trunk=("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
        taps=(5, 6, 7),
        channels=(128, 256, 512),
        cam_index=7,
        blocks=(4, 5, 6, 7),
        # global average pool, fc
        head_kind="avgpool_fc",
        head_keys={"fc.weight": "2.weight", "fc.bias": "2.bias"},
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
    )
)
