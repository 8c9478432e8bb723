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

    .venv/bin/python benchmarks/bench_inference.py [--crops 96] [--repeats 3]

Uses the WT crops from ../shared when present, else synthetic crops. Each figure is the best of
``--repeats`` runs. Reports ratios; never asserts timings.
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


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def anchor_rate(repeats: int, batches: int = 3) -> float:
    """Crops/s of eager torchvision squeezenet1_1, batch 32, 224 px, inference_mode."""
    from napari_chromosome_sort.classification._torchvision_compat import import_torchvision

    net = import_torchvision().models.squeezenet1_1(weights=None).eval()
    x = torch.randn(32, 3, 224, 224)

    def run():
        with torch.inference_mode():
            for _ in range(batches):
                net(x)

    return 32 * batches / best_time(run, repeats)


def project_model():
    """SqueezeNet 1.1 (random weights) + pooled head, 224 px, the default preprocessing."""
    from napari_chromosome_sort.classification.backbones import build_backbone
    from napari_chromosome_sort.classification.classifier import ChromosomeClassifier, PooledHead
    from napari_chromosome_sort.classification.features import Preprocessing

    torch.manual_seed(0)
    backbone = build_backbone("squeezenet1_1", weights="random")
    head = PooledHead(backbone.feature_dim, 3)
    return ChromosomeClassifier(backbone, head, ["A", "B", "C"], Preprocessing(size=224)).eval()


def predict_rates(model, crops, repeats: int) -> dict[str, float]:
    """Crops/s of predict_proba with 1, 4 (the default) and 8 views."""
    rates = {}
    default = model.prediction_views
    for views, label in ((1, "one view"), (default, f"{default} (default)"), (8, "8 views")):
        seconds = best_time(lambda v=views: model.predict_proba(crops, views=v), repeats)
        rates[label] = len(crops) / seconds
    return rates


def gradcam_seconds(model, crops, repeats: int) -> float:
    """Seconds per crop of spread_gradcam over ``crops`` pasted side by side."""
    from napari_chromosome_sort.classification.gradcam import spread_gradcam
    from napari_chromosome_sort.crops import Crop, CropGeometry

    side = max(max(c.shape[:2]) for c in crops)
    placed = []
    for i, c in enumerate(crops):
        square = np.full((side, side, 3), 255, np.uint8)
        square[: c.shape[0], : c.shape[1]] = c
        geometry = CropGeometry(0, i * side, side, (i + 1) * side, side, (side, side * len(crops)))
        placed.append(Crop(square, geometry, i + 1))
    return best_time(lambda: spread_gradcam(model, placed), repeats) / len(crops)


def spread_seconds(model, repeats: int) -> tuple[float, int, str]:
    """(seconds of one predict_spread with Grad-CAM, kept objects, which spread)."""
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.io import read_image

    path = REPO.parent / "shared" / "data" / "giemsa_spreads_ddx11" / "images" / "2.png"
    if path.is_file():
        image, name = read_image(path), "Giemsa 2.png"
    else:
        from napari_chromosome_sort.synthetic import make_spread

        image, name = make_spread(seed=0, n_chromosomes=60).image, "synthetic spread"
    kept = len(predict_spread(model, image).table)
    return best_time(lambda: predict_spread(model, image, gradcam=True), repeats), kept, name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=96)
    parser.add_argument("--gradcam-crops", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    crops, source = load_crops(args.crops)
    print(f"{len(crops)} {source}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    anchor = anchor_rate(args.repeats)
    print(f"anchor (torchvision squeezenet1_1, batch 32, 224 px): {anchor:.1f} crops/s")
    model = project_model()

    start = time.perf_counter()
    fast = model.fast_logits(10_000)
    first = time.perf_counter() - start
    print(f"ONNX Runtime graph ready in {first:.1f} s (export or cache load, once per model)")
    rates = {"ONNX Runtime": predict_rates(model, crops, args.repeats)} if fast else {}
    cams = {}
    if fast:
        cams["ONNX Runtime"] = gradcam_seconds(model, crops[: args.gradcam_crops], args.repeats)
    os.environ["CHROMOSORT_ONNX"] = "0"
    try:
        rates["torch"] = predict_rates(model, crops, args.repeats)
        cams["torch"] = gradcam_seconds(model, crops[: args.gradcam_crops], args.repeats)
    finally:
        del os.environ["CHROMOSORT_ONNX"]
    print("\npath          views        crops/s   x anchor")
    for path, by_views in rates.items():
        for views, rate in by_views.items():
            print(f"{path:13s} {views:12s} {rate:7.1f}   {rate / anchor:6.2f}")
    print()
    for path, cam in cams.items():
        print(
            f"Grad-CAM, {path}: {1000 * cam:.1f} ms per crop = {cam * anchor:.2f}x the anchor's "
            "time per crop"
        )
    seconds, kept, name = spread_seconds(model, max(1, args.repeats - 1))
    print(
        f"whole spread ({name}, {kept} chromosomes; segment + default-view calls + Grad-CAM): "
        f"{seconds:.1f} s = {seconds / (kept / anchor):.2f}x one anchor pass over its crops"
    )


if __name__ == "__main__":
    main()
