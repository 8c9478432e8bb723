"""The torchvision compat module: import works and only patches when _C cannot load."""

import subprocess
import sys


def test_import_torchvision_and_build_models():
    from napari_chromosome_sort.classification.models import _torchvision_compat as compat

    tv = compat.import_torchvision()
    if compat.extension_loaded is not None:  # None: torchvision was imported before
        # op schemas are defined exactly when torchvision's own extension failed to load
        assert (compat._library is not None) == (not compat.extension_loaded)
    model = tv.models.squeezenet1_1(weights=None, num_classes=3)
    assert model.classifier[1].out_channels == 3


def test_schemas_defined_only_when_extension_fails():
    code = (
        "from napari_chromosome_sort.classification.models import _torchvision_compat as c;"
        "c.import_torchvision();"
        "import torch;"
        "print(c.extension_loaded, c._library is not None, hasattr(torch.ops.torchvision, 'nms'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, patched, has_nms = out.stdout.split()
    assert has_nms == "True"
    assert patched == ("False" if loaded == "True" else "True")
