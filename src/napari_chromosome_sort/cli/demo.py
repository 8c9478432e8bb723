"""``chromosort demo``: the whole pipeline on the built-in synthetic sample spread.

Synthetic crops of known type train a head on a frozen backbone; a synthetic spread with known
A/B/C truth is segmented, cropped, classified and explained (Grad-CAM). Outputs go to ``--out``;
``--gui`` opens napari with the sample spread and the plugin's widgets docked instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "Run segment -> crop -> train -> predict -> Grad-CAM on the built-in sample spread."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--gui", action="store_true", help="open napari with the widgets docked")
    parser.add_argument(
        "--screenshot", action="store_true", help="also save a napari screenshot (needs a display)"
    )
    parser.add_argument(
        "--weights",
        default=os.environ.get("CHROMOSORT_WEIGHTS", "auto"),
        help="backbone weights: a file, 'imagenet', 'random', or 'auto' (ImageNet from a file, "
        "the torch hub cache or a download; if none can be had, random with a warning)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")


def _train(dataset: Path, weights: str, out: Path):
    from ..classification.training import TrainingConfig, train_from_folder
    from ..errors import ChromosortError
    from ..progress import with_tqdm

    candidates = ["imagenet", "random"] if weights == "auto" else [weights]
    for choice in candidates:
        config = TrainingConfig(backbone="squeezenet1_1", weights=choice, seed=0)
        try:
            model = with_tqdm(train_from_folder(dataset, config), desc="train")
        except ChromosortError as error:
            if choice == candidates[-1]:
                raise
            print(
                f"[demo] ImageNet weights unavailable ({error}); using random weights "
                "for this demo only — calls will be poor.",
                file=sys.stderr,
            )
            continue
        print(f"[demo] trained squeezenet1_1 head with weights={choice}", file=sys.stderr)
        return model
    raise AssertionError("unreachable")


def _match_truth(table, truth, iou_min: float = 0.5):
    """Pair each predicted object with the truth chromosome of best box IoU (>= iou_min)."""
    import numpy as np

    keys = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
    truth = truth[truth["kind"] == "chromosome"]
    pairs = []
    for _, row in table.iterrows():
        a = row[keys].to_numpy(float)
        best, best_iou = None, iou_min
        for _, t in truth.iterrows():
            b = t[keys].to_numpy(float)
            iy = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ix = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iy * ix
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            iou = inter / union if union else 0.0
            if iou >= best_iou:
                best, best_iou = t["cls"], iou
        pairs.append(best)
    matched = [(p, c) for p, c in zip(pairs, table["class"], strict=True) if p is not None]
    agree = float(np.mean([p == c for p, c in matched])) if matched else float("nan")
    return len(matched), agree


def _overview_png(path: Path, image, prediction, classes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from skimage.segmentation import find_boundaries

    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), dpi=100)
    for ax in axes:
        ax.imshow(image, cmap="gray")
        ax.set_axis_off()
    labels = prediction.segmentation.labels
    overlay = np.zeros((*labels.shape, 4))
    for _, row in prediction.table.iterrows():
        edge = find_boundaries(labels == row["label"], mode="outer")
        overlay[edge] = colours(classes.index(row["class"]))
        axes[0].text(row["bbox_x1"], row["bbox_y0"], row["class"], color="yellow", fontsize=8)
    axes[0].imshow(overlay)
    axes[0].set_title("predicted cohesion type")
    if prediction.gradcam_map is not None:
        axes[1].imshow(prediction.gradcam_map, cmap="inferno", alpha=0.6)
    axes[1].set_title("Grad-CAM")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _napari_screenshot(path: Path, image, prediction, classes) -> None:
    """The viewer as a user sees it: spread, class labels, Grad-CAM and the docked widgets."""
    import napari
    import numpy as np
    from imageio.v3 import imwrite
    from napari.utils.colormaps import DirectLabelColormap

    from .._widgets.launch import dock_all

    viewer = napari.Viewer(title="napari-chromosome-sort demo", show=True)
    viewer.add_image(image, name="sample spread", rgb=image.ndim == 3)
    class_of = dict(zip(prediction.table["label"], prediction.table["class"], strict=True))
    labels = prediction.segmentation.labels
    kept = np.where(np.isin(labels, list(class_of)), labels, 0)
    palette = {None: "transparent", 0: "transparent"}
    tab10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for label, name in class_of.items():
        palette[int(label)] = tab10[classes.index(name) % len(tab10)]
    viewer.add_labels(
        kept, name="predicted type", colormap=DirectLabelColormap(color_dict=palette), opacity=0.5
    )
    if prediction.gradcam_map is not None:
        viewer.add_image(
            prediction.gradcam_map,
            name="Grad-CAM",
            colormap="inferno",
            blending="additive",
            opacity=0.6,
        )
    viewer.window.resize(1500, 950)
    docked = dock_all(viewer)
    predict_widget = docked.get("Predict and explain")
    if predict_widget is not None:  # bring the tab that explains the picture to the front
        predict_widget.parentWidget().raise_()
    imwrite(path, viewer.screenshot(canvas_only=False, flash=False))
    viewer.close()


def run(args: argparse.Namespace) -> int:
    if args.gui:
        import napari

        from .._widgets.launch import open_demo_viewer

        open_demo_viewer(show=True)
        napari.run()
        return 0

    import tifffile
    from imageio.v3 import imwrite

    from ..classification.model_io import save_model
    from ..classification.predict import predict_spread
    from ..synthetic import make_crop_dataset, make_spread

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[demo] synthetic training crops -> {out / 'training_crops'}", file=sys.stderr)
    make_crop_dataset(out / "training_crops", n_per_class=40, seed=args.seed)
    model = _train(out / "training_crops", args.weights, out)
    model_path = save_model(model, out / "model.safetensors")

    spread = make_spread(seed=args.seed + 1)
    imwrite(out / "sample_spread.png", spread.image)
    prediction = predict_spread(model, spread.image, gradcam=True)
    tifffile.imwrite(out / "labels.tif", prediction.segmentation.labels, compression="zlib")
    prediction.segmentation.objects.to_csv(out / "objects.csv", index=False)
    prediction.table.to_csv(out / "predictions.csv", index=False)
    if prediction.gradcam_map is not None:
        tifffile.imwrite(out / "gradcam.tif", prediction.gradcam_map.astype("float32"))
    classes = list(model.classes)
    _overview_png(out / "overview.png", spread.image, prediction, classes)
    if args.screenshot:
        _napari_screenshot(out / "napari_screenshot.png", spread.image, prediction, classes)

    statuses = prediction.segmentation.objects["status"].value_counts().to_dict()
    n_matched, agreement = _match_truth(prediction.table, spread.truth)
    distribution = prediction.table["class"].value_counts().reindex(classes, fill_value=0)
    print(f"objects by status: {statuses}")
    print(f"predicted types: {distribution.to_dict()}")
    print(f"agreement with the synthetic truth: {agreement:.2f} on {n_matched} matched chromosomes")
    print(f"model: {model_path}\noutputs: {out.resolve()}")
    return 0
