"""``chromosort demo``: the whole pipeline on the built-in samples, headless.

1. The real Giemsa sample spread (shipped with its licence) is segmented, every kept chromosome
   is classified by the bundled model trained on wild-type crops of Ikemoto et al. 2022, and
   explained (Grad-CAM); the calls are compared with the annotator's boxes of that spread.
2. Synthetic crops of known type train a head on a frozen backbone; a synthetic spread with known
   A/B/C truth is segmented, cropped, classified and explained.

Outputs go to ``--out`` (one sub-folder each); ``--gui`` opens napari with the real sample spread
and the plugin's widgets docked instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import with_tqdm

HELP = "Run segment -> classify -> Grad-CAM on the built-in real and synthetic sample spreads."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort demo``."""
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--gui", action="store_true", help="open napari with the widgets docked")
    parser.add_argument(
        "--screenshot", action="store_true", help="also save napari screenshots (needs a display)"
    )
    parser.add_argument(
        "--weights",
        default=os.environ.get("CHROMOSORT_WEIGHTS", "auto"),
        help="backbone weights of the synthetic part: a file, 'imagenet', 'random', or 'auto' "
        "(ImageNet from a file, the torch hub cache or a download; if none can be had, random "
        "with a warning)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    add_overwrite_argument(parser, "files in --out")


OUTPUT_FILES = (
    "spread.png",
    "labels.tif",
    "objects.csv",
    "predictions.csv",
    "gradcam.tif",
    "overview.png",
    "napari_screenshot.png",
)
"""What each part of the demo writes in its sub-folder (the synthetic part: a model too)."""


def _check_outputs(out: Path, overwrite: bool) -> None:
    """Before any work: no file the demo writes would replace one chromosort did not write
    (unless ``overwrite``), none goes through a link, and its training-crop folder is its own."""
    from napari_chromosome_sort.files.safety import no_links, output_path, owns

    for part, extra in (("giemsa_sample", ()), ("synthetic", ("model.safetensors",))):
        for name in (*OUTPUT_FILES, *extra):
            output_path(out / part / name, out, overwrite, "demo output")
    crops = no_links(out, out / "synthetic" / "training_crops", "crops folder")
    if crops.is_dir() and any(crops.iterdir()) and not owns(crops) and not overwrite:
        raise ChromosortError(
            f"{crops} holds files chromosort did not write; choose another --out or pass "
            "--overwrite"
        )


def _train(dataset: Path, weights: str):
    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.classification.training import (
        TrainingConfig,
        train_from_folder,
    )

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


def _matched_calls(table, truth_boxes, truth_classes) -> list[tuple[str, str]]:
    """(true class, called class) of every called object whose box matches a truth box
    one-to-one at IoU >= 0.5."""
    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.segmentation.truth import BOX_COLUMNS, box_iou, greedy_match

    iou = box_iou(truth_boxes, table[BOX_COLUMNS].to_numpy(float))
    calls = table["class"].to_numpy()
    return [(truth_classes[i], calls[j]) for i, j in greedy_match(iou)]


def _save_outputs(out: Path, image, prediction, classes: list[str], screenshot: bool) -> None:
    """The demo's files of one spread in ``out``, each written atomically and recorded as
    chromosort's (checked beforehand: :func:`_check_outputs`)."""
    import tifffile
    from imageio.v3 import imwrite

    from napari_chromosome_sort.files.atomic import atomic_path, write_csv_atomic
    from napari_chromosome_sort.files.safety import record_written

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "spread.png") as tmp:
        imwrite(tmp, image, extension=".png")
    with atomic_path(out / "labels.tif") as tmp:
        tifffile.imwrite(tmp, prediction.segmentation.labels, compression="zlib")
    write_csv_atomic(prediction.segmentation.objects, out / "objects.csv")
    write_csv_atomic(prediction.table, out / "predictions.csv")
    written = ["spread.png", "labels.tif", "objects.csv", "predictions.csv", "overview.png"]
    if prediction.gradcam_map is not None:
        with atomic_path(out / "gradcam.tif") as tmp:
            tifffile.imwrite(tmp, prediction.gradcam_map.astype("float32"))
        written.append("gradcam.tif")
    with atomic_path(out / "overview.png") as tmp:
        _overview_png(tmp, image, prediction, classes)
    if screenshot:
        with atomic_path(out / "napari_screenshot.png") as tmp:
            _napari_screenshot(tmp, image, prediction, classes)
        written.append("napari_screenshot.png")
    record_written([out / name for name in written])


def _report(name: str, prediction, classes: list[str], pairs: list[tuple[str, str]], n_truth):
    import numpy as np

    statuses = prediction.segmentation.objects["status"].value_counts().to_dict()
    called = prediction.table["class"].value_counts().reindex(classes, fill_value=0)
    print(f"\n{name}")
    print(f"  objects by status: {statuses}")
    print(f"  called types: {called.to_dict()}")
    if n_truth:
        true = [t for t, _ in pairs]
        shares = ", ".join(
            f"{c} {np.mean([t == c for t in true]):.0%} / {np.mean([p == c for _, p in pairs]):.0%}"
            for c in classes
        )
        right = sum(t == p for t, p in pairs)
        print(
            f"  {len(pairs)} of {n_truth} annotated chromosomes found; called as annotated: "
            f"{right} of {len(pairs)} ({right / max(len(pairs), 1):.0%})"
        )
        print(f"  type shares of the found ones, annotated / called: {shares}")


def _real_sample(out: Path, screenshot: bool) -> None:
    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort._sample_data import GIEMSA_SAMPLE_BOXES, WT_MODEL, sample_path
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.segmentation.truth import read_yolo, read_yolo_classes

    model = load_model(sample_path(WT_MODEL))
    image = read_image(sample_path())
    prediction = predict_spread(model, image, gradcam=True)
    classes = list(model.classes)
    _save_outputs(out, image, prediction, classes, screenshot)
    boxes_file = sample_path(GIEMSA_SAMPLE_BOXES)
    truth = read_yolo(boxes_file, image.shape)
    truth_classes = [classes[k] for k in read_yolo_classes(boxes_file)]
    pairs = _matched_calls(prediction.table, truth, truth_classes)
    _report(
        "real Giemsa spread (DDX11-/-), bundled wild-type model",
        prediction,
        classes,
        pairs,
        len(truth),
    )
    print(f"  outputs: {out.resolve()}")


def _synthetic(out: Path, weights: str, seed: int, screenshot: bool) -> None:
    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.classification.models.model_io import save_model
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.files.safety import claim_folder, record_written
    from napari_chromosome_sort.synthetic import make_crop_dataset, make_spread

    out.mkdir(parents=True, exist_ok=True)
    print(f"[demo] synthetic training crops -> {out / 'training_crops'}", file=sys.stderr)
    claim_folder(out / "training_crops", out, "crops folder")
    make_crop_dataset(out / "training_crops", n_per_class=40, seed=seed)
    model = _train(out / "training_crops", weights)
    model_path = save_model(model, out / "model.safetensors")
    record_written([model_path])
    spread = make_spread(seed=seed + 1)
    prediction = predict_spread(model, spread.image, gradcam=True)
    classes = list(model.classes)
    _save_outputs(out, spread.image, prediction, classes, screenshot)
    truth = spread.truth[spread.truth["kind"] == "chromosome"]
    pairs = _matched_calls(
        prediction.table,
        truth[["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].to_numpy(float),
        truth["cls"].tolist(),
    )
    _report(
        "synthetic spread, head trained on synthetic crops", prediction, classes, pairs, len(truth)
    )
    print(f"  model: {model_path}\n  outputs: {out.resolve()}")


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

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort._widgets.launch import dock_all

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
    """Run ``chromosort demo``; returns the exit status."""
    if args.gui:
        from napari_chromosome_sort._widgets.launch import open_demo_viewer

        open_demo_viewer(show=True, run=True)
        return 0
    out = Path(args.out)
    _check_outputs(out, args.overwrite)
    _real_sample(out / "giemsa_sample", args.screenshot)
    _synthetic(out / "synthetic", args.weights, args.seed, args.screenshot)
    return 0
