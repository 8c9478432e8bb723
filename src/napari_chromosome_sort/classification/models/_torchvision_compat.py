"""Import torchvision even when its compiled ``_C`` extension cannot load.

PyPI's torchvision wheel for Linux is built against CUDA torch. Paired with a CPU-only torch
(the usual laptop/CI install), ``torchvision/_C.so`` fails to load and ``import torchvision``
dies in ``torchvision._meta_registrations`` with ``operator torchvision::nms does not exist``,
because that module registers fake kernels for ops whose schemas only ``_C`` defines.

:func:`import_torchvision` first lets torchvision try to load ``_C`` exactly as it would. Only if
that fails does it define the missing operator *schemas* (no kernels) so the import succeeds.
Models, transforms and weights work; the detection ops (``nms``, ``roi_align``...) then raise
"no kernel" if called. This package never calls them.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

# Schemas as declared in torchvision/csrc/ops/*.cpp (torchvision 0.16 - 0.28).
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, "
    "float rois_scale, int rois_zero_point, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
    "SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
    "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
    "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)

_library = None  # keeps the schema definitions alive for the life of the process
extension_loaded: bool | None = None  # None until import_torchvision() ran


def _load_extension() -> bool:
    """Try to load torchvision's ``_C`` the way torchvision itself does."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed: pip install torchvision")
    folder = list(spec.submodule_search_locations)[0]
    candidates = [
        name
        for name in os.listdir(folder)
        # _C.so up to torchvision 0.28, _C_stable.so (torch's stable ABI) from 0.29
        if name.startswith(("_C.", "_C_stable.")) and name.endswith((".so", ".pyd"))
    ]
    for name in candidates:
        try:
            torch.ops.load_library(os.path.join(folder, name))
            return True
        except (OSError, RuntimeError):
            continue
    return False


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, defining op schemas first if ``_C`` cannot load."""
    global _library, extension_loaded
    import sys

    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    import torch

    extension_loaded = _load_extension()
    if not extension_loaded and _library is None:
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
    import torchvision

    return torchvision
