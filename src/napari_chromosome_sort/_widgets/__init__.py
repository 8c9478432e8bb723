"""All Qt/napari code of the plugin: thin dock widgets over the Qt-free core."""

import os
import sys

# The registry's default (CUDA) torch brings triton, whose own copy of LLVM collides with Mesa's
# when it is loaded after napari's OpenGL context exists under a software renderer (a VM, a remote
# desktop, Xvfb): the first `import torchvision.ops` kills napari with a segmentation fault and no
# message. The plugin never uses triton (no torch.compile), so in napari it is marked absent
# before any torch import; torch then runs without it. CHROMOSORT_ALLOW_TRITON=1 keeps it for
# other plugins that need it on a hardware-OpenGL machine. Pinned by tests/test_default_torch.py.
if os.environ.get("CHROMOSORT_ALLOW_TRITON") != "1":
    sys.modules.setdefault("triton", None)
