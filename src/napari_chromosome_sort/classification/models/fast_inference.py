"""Frozen forward passes in ONNX Runtime on CPU: the same outputs as torch, several times faster.

A frozen module (a backbone's pooled features, or a whole classifier's logits) is exported to
ONNX once and kept in the user cache directory (``onnx/<key>.onnx``, ``key``: a hash of the
module's kind, its weights and the input size), so later runs only load it. The cache is safe to
delete and bounded in size (oldest files go first). Export happens only when it pays back (a
large enough job) or the graph is already cached.

Torch stays in charge of training, Grad-CAM and GPUs: this path is used only on CPU, and any
problem (``onnxruntime`` or ``onnx`` missing, an export or load failure) falls back to torch
silently. ``CHROMOSORT_ONNX=0`` turns it off; ``CHROMOSORT_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_chromosome_sort.files.atomic import write_bytes_atomic

DISABLE_ENV = "CHROMOSORT_ONNX"
CACHE_ENV = "CHROMOSORT_CACHE_DIR"
FORMAT = "onnx-v1"  # bump when the exported graph changes for the same weights
MIN_FORWARDS = 64  # export only for jobs of at least this many crop views (or when cached)
MAX_CACHE_BYTES = 512 * 2**20
_MAX_SESSIONS = 4

_SESSIONS: OrderedDict[str, object] = OrderedDict()
_FAILED: set[str] = set()
_log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]


def user_cache_dir() -> Path:
    """The plugin's cache folder: ``$CHROMOSORT_CACHE_DIR``, else the platform's user cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    try:
        from platformdirs import user_cache_dir as platform_cache
    except ImportError:
        return Path.home() / ".cache" / "napari-chromosome-sort"
    return Path(platform_cache("napari-chromosome-sort", appauthor=False))


def weights_hash(module) -> str:
    """SHA-1 of a module's tensors (names, shapes, dtypes and values)."""
    h = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _available() -> bool:
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _on_cpu(module) -> bool:
    param = next(module.parameters(), None)
    return param is None or param.device.type == "cpu"


def usable(module) -> bool:
    """Whether ONNX Runtime may run ``module`` now: installed, not turned off, module on CPU."""
    return _available() and _on_cpu(module)


def _export(module, input_size: int, outputs: int = 1) -> bytes:
    """ONNX bytes of ``module`` (eval mode, ``outputs`` outputs) for inputs (N, 3, S, S), N
    dynamic."""
    was_training = module.training
    module.eval()
    buffer = io.BytesIO()
    example = torch.zeros((2, 3, input_size, input_size))
    names = [f"y{i}" for i in range(outputs)] if outputs > 1 else ["y"]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                input_names=["x"],
                output_names=names,
                dynamic_axes={"x": {0: "n"}, **{name: {0: "n"} for name in names}},
                opset_version=17,
            )
    finally:
        module.train(was_training)
    return buffer.getvalue()


def _session(model: bytes | str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _prune(folder: Path, keep: Path, limit: int = MAX_CACHE_BYTES) -> None:
    """Delete the oldest graphs until the folder holds at most ``limit`` bytes."""
    files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for path in files:
        total += path.stat().st_size
        if total > limit and path != keep:
            path.unlink(missing_ok=True)


def _load_or_export(module, input_size: int, key: str, export: bool, outputs: int):
    folder = user_cache_dir() / "onnx"
    path = folder / f"{key}.onnx"
    if path.is_file():
        try:
            session = _session(str(path))
            os.utime(path)
            return session
        except Exception:  # corrupt or foreign file: export again
            path.unlink(missing_ok=True)
    if not export:
        return None
    data = _export(module, input_size, outputs)
    session = _session(data)
    try:
        write_bytes_atomic(path, data)
        _prune(folder, keep=path)
    except OSError as error:  # read-only cache: this process still uses the session
        _log.info("ONNX graph not cached: %s", error)
    return session


def onnx_runner(
    module, input_size: int, kind: str, forwards: int = MIN_FORWARDS, outputs: int = 1
) -> Runner | None:
    """A numpy (N, 3, S, S) float32 -> (N, ...) float32 function equal to ``module``'s frozen
    forward, run by ONNX Runtime (a module of several ``outputs`` returns a tuple, and the
    function a list of arrays); None (use torch) when unavailable, not on CPU, not worth an
    export for ``forwards`` crop views, or when the export fails. ``kind`` names what the module
    computes (part of the cache key)."""
    if not usable(module):
        return None
    key = hashlib.sha1(
        f"{FORMAT}|{kind}|{type(module).__name__}|{input_size}|{outputs}|"
        f"{weights_hash(module)}".encode()
    ).hexdigest()[:24]
    if key in _FAILED:
        return None
    session = _SESSIONS.get(key)
    if session is None:
        try:
            session = _load_or_export(module, input_size, key, forwards >= MIN_FORWARDS, outputs)
        except Exception as error:  # any exporter/runtime failure: torch does the work
            _log.info("ONNX Runtime not used (%s: %s)", type(error).__name__, error)
            _FAILED.add(key)
            return None
        if session is None:
            return None
        _SESSIONS[key] = session
        while len(_SESSIONS) > _MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    _SESSIONS.move_to_end(key)

    def run(x: np.ndarray) -> np.ndarray:
        """The session's output(s) for ``x`` (cast to contiguous float32)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        result = session.run(None, {"x": x})
        return result if outputs > 1 else result[0]

    return run


def clear_sessions() -> None:
    """Forget the in-memory sessions (the cached files stay)."""
    _SESSIONS.clear()
    _FAILED.clear()
