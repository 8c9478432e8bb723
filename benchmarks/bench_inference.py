"""Inference speed as ratios to an anchor measured in the same run.

Anchor: eager torchvision ``squeezenet1_1`` (random weights), batch 32, 224 px inputs,
``torch.inference_mode``: its crops/s (network only, inputs ready). Measured through the
project's own path (``ChromosomeClassifier.predict_proba``: preprocessing included, SqueezeNet
1.1 backbone + pooled head, 224 px):

* crops/s with one view, the default 4-view averaging (the four rotations) and 8-view averaging,
  with ONNX Runtime (the default on CPU) and with torch only (``CHROMOSORT_ONNX=0``);
* Grad-CAM per crop (``spread_gradcam``, the default multi-layer map) with ONNX Runtime (the
  default on CPU: one forward per crop) and with torch only (a forward and a backward), as a
  multiple of the anchor's time per crop;
* one whole spread (``predict_spread(..., gradcam=True)``: segment, crop, classify with the
  default views, Grad-CAM; after one warm-up spread, as the extra spread of a run would be), as
  a multiple of one anchor pass over as many crops as the spread keeps. The spread is 2.png of
  the shared Giemsa spreads (102 chromosomes) when present, else a synthetic one.

    .venv/bin/python benchmarks/bench_inference.py [--crops 96] [--repeats 3] [--spread-only]

Uses the WT crops from ../shared when present, else synthetic crops. Each figure is the median
of ``--repeats`` runs, each run divided by anchor passes timed just before and just after it (so
that the machine's load moving between measurements stays out of the ratios). Reports ratios;
never asserts timings.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
WT = REPO.parent / "shared" / "data" / "ikemoto_crops_wt"


def load_crops(n: int) -> tuple[list[np.ndarray], str]:
    """``n`` RGB crops: every k-th WT crop when present, else synthetic ones."""
    from PIL import Image

    files = sorted(WT.glob("*/*.jpg")) if WT.is_dir() else []
    if files:
        step = max(1, len(files) // n)
        crops = [np.asarray(Image.open(f).convert("RGB")) for f in files[::step][:n]]
        return crops, "WT crops"
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(0)
    return [make_crop("ABC"[i % 3], rng, 64) for i in range(n)], "synthetic crops"


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def anchor_rate(repeats: int) -> float:
    """Crops/s of the anchor (the best of ``repeats`` passes)."""
    anchor = Anchor()
    return 1.0 / min(anchor.per_crop() for _ in range(repeats))


class Anchor:
    """Eager torchvision squeezenet1_1 (random weights), batch 32, 224 px, inference_mode: its
    time per crop, measured again beside every measurement, so that a change in the machine's
    load between measurements does not enter the ratios."""

    def __init__(self, batches: int = 3):
        from napari_chromosome_sort.classification.models._torchvision_compat import (
            import_torchvision,
        )

        self.net = import_torchvision().models.squeezenet1_1(weights=None).eval()
        self.x = torch.randn(32, 3, 224, 224)
        self.batches = batches
        self.per_crop()  # warm-up

    def per_crop(self) -> float:
        """Seconds per crop of one anchor pass (``batches`` batches of 32)."""

        def run():
            with torch.inference_mode():
                for _ in range(self.batches):
                    self.net(self.x)

        return seconds(run) / (32 * self.batches)

    def ratio(self, fn: Callable[[], object], crops: int, repeats: int) -> float:
        """Median over ``repeats`` of (the anchor's time for ``crops`` crops, measured just
        before and just after) / (the time of ``fn``), after one warm-up call of ``fn``: above
        1, ``fn`` is faster than an anchor pass over its crops."""
        fn()
        ratios = []
        for _ in range(repeats):
            before = self.per_crop()
            took = seconds(fn)
            after = self.per_crop()
            ratios.append(crops * (before + after) / 2 / took)
        return float(np.median(ratios))


def project_model():
    """SqueezeNet 1.1 (random weights) + pooled head, 224 px, the default preprocessing."""
    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        PooledHead,
    )

    torch.manual_seed(0)
    backbone = build_backbone("squeezenet1_1", weights="random")
    head = PooledHead(backbone.feature_dim, 3)
    return ChromosomeClassifier(backbone, head, ["A", "B", "C"], Preprocessing(size=224)).eval()


def predict_ratios(model, crops, anchor: Anchor, repeats: int) -> dict[str, float]:
    """predict_proba with 1, 4 (the default) and 8 views: crops/s as a multiple of the
    anchor's."""
    default = model.prediction_views
    return {
        label: anchor.ratio(
            lambda v=views: model.predict_proba(crops, views=v), len(crops), repeats
        )
        for views, label in ((1, "one view"), (default, f"{default} (default)"), (8, "8 views"))
    }


def placed_crops(crops) -> list:
    """``crops`` pasted side by side into one image (for spread_gradcam)."""
    from napari_chromosome_sort.crops import Crop, CropGeometry

    side = max(max(c.shape[:2]) for c in crops)
    placed = []
    for i, c in enumerate(crops):
        square = np.full((side, side, 3), 255, np.uint8)
        square[: c.shape[0], : c.shape[1]] = c
        geometry = CropGeometry(0, i * side, side, (i + 1) * side, side, (side, side * len(crops)))
        placed.append(Crop(square, geometry, i + 1))
    return placed


def spread_image():
    """(image, name): Giemsa 2.png of the shared spreads when present, else a synthetic one."""
    from napari_chromosome_sort.files.io import read_image

    path = REPO.parent / "shared" / "data" / "giemsa_spreads_ddx11" / "images" / "2.png"
    if path.is_file():
        return read_image(path), "Giemsa 2.png"
    from napari_chromosome_sort.synthetic import make_spread

    return make_spread(seed=0, n_chromosomes=60).image, "synthetic spread"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=96)
    parser.add_argument("--gradcam-crops", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--spread-only", action="store_true", help="only the whole spread and its two parts"
    )
    args = parser.parse_args(argv)

    crops, source = load_crops(args.crops)
    print(f"{len(crops)} {source}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    anchor = Anchor()
    print(
        f"anchor (torchvision squeezenet1_1, batch 32, 224 px): {1 / anchor.per_crop():.1f} crops/s"
    )
    model = project_model()
    if not args.spread_only:
        crop_ratios(model, crops[: args.gradcam_crops], crops, anchor, args.repeats)
    whole_spread(model, anchor, args.repeats)


def crop_ratios(model, cam_crops, crops, anchor: Anchor, repeats: int) -> None:
    """Prints crops/s with 1, the default and 8 views, and Grad-CAM's time per crop, with ONNX
    Runtime and with torch only."""
    from napari_chromosome_sort.classification.gradcam import spread_gradcam

    fast = model.fast_logits(10_000)
    placed = placed_crops(cam_crops)
    ratios, cams = {}, {}
    for path, onnx in (("ONNX Runtime", True), ("torch", False)):
        if onnx and not fast:
            continue
        os.environ["CHROMOSORT_ONNX"] = "1" if onnx else "0"
        ratios[path] = predict_ratios(model, crops, anchor, repeats)
        cams[path] = anchor.ratio(lambda: spread_gradcam(model, placed), len(placed), repeats)
    del os.environ["CHROMOSORT_ONNX"]
    print("\npath          views        x anchor's crops/s")
    for path, by_views in ratios.items():
        for views, ratio in by_views.items():
            print(f"{path:13s} {views:12s} {ratio:6.2f}")
    print()
    for path, ratio in cams.items():
        print(f"Grad-CAM alone, {path}: {1 / ratio:.2f}x the anchor's time per crop")


def whole_spread(model, anchor: Anchor, repeats: int) -> None:
    """Prints the time of one whole spread (segment, crop, default-view calls, Grad-CAM) and of
    its two parts, each as a multiple of one anchor pass over the spread's kept crops."""
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.segmentation import segment_spread

    image, name = spread_image()
    segmentation = segment_spread(image)
    kept = len(predict_spread(model, image, segmentation=segmentation).table)
    whole = anchor.ratio(lambda: predict_spread(model, image, gradcam=True), kept, repeats)
    segment = anchor.ratio(lambda: segment_spread(image), kept, repeats)
    calls = anchor.ratio(
        lambda: predict_spread(model, image, gradcam=True, segmentation=segmentation),
        kept,
        repeats,
    )
    print(
        f"whole spread ({name}, {kept} chromosomes; segment + default-view calls + Grad-CAM): "
        f"{1 / whole:.2f}x one anchor pass over its crops (segmentation {1 / segment:.2f}x, "
        f"crops + calls + Grad-CAM {1 / calls:.2f}x)"
    )


if __name__ == "__main__":
    main()
