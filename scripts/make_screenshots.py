"""Render screenshots of every plugin widget in use on a real Giemsa spread.

    xvfb-run -a .venv/bin/python scripts/make_screenshots.py [--fast]

Writes docs/images/widget_{segment,label,train,predict}.png. The predict screenshot needs a
model: one is trained here on the WT crops (ImageNet SqueezeNet features file, no network);
``--fast`` (or a missing crops folder) imports the published model instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SPREAD = SHARED / "data" / "giemsa_spreads_ddx11" / "images" / "1.png"
WT_CROPS = SHARED / "data" / "ikemoto_crops_wt"
FEATURE_WEIGHTS = SHARED / "weights" / "squeezenet1_1_imagenet_features.pth"
PUBLISHED = SHARED / "weights" / "ikemoto2022_squeezenet_1.pth"
OUT = REPO / "docs" / "images"


def wait(condition, timeout=1800.0):
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    start = time.time()
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - start > timeout:
            raise TimeoutError("timed out waiting for the widget")


def settle(seconds=0.5):
    from qtpy.QtWidgets import QApplication

    end = time.time() + seconds
    while time.time() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def show_dock(viewer, title):
    dock = viewer.window.dock_widgets[title].parent()
    dock.show()
    dock.raise_()
    settle(0.5)


def zoom_to_chromosomes(viewer, features, pad=60):
    """Centre the camera on the kept chromosomes (the spread, not the nuclei around it)."""
    from napari_chromosome_sort._widgets._common import camera

    kept = features[features["status"] == "chromosome"]
    y0, x0 = kept["bbox_y0"].min() - pad, kept["bbox_x0"].min() - pad
    y1, x1 = kept["bbox_y1"].max() + pad, kept["bbox_x1"].max() + pad
    camera(viewer).center = ((y0 + y1) / 2, (x0 + x1) / 2)
    height, width = viewer.window._qt_viewer.canvas.size
    camera(viewer).zoom = 0.95 * min(height / (y1 - y0), width / (x1 - x0))


def shoot(viewer, name):
    OUT.mkdir(parents=True, exist_ok=True)
    settle(1.0)
    path = OUT / f"widget_{name}.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="import the published model")
    parser.add_argument("--views", type=int, default=1, help="dihedral views for training")
    parser.add_argument("--cv", type=int, default=2, help="cross-validation folds")
    args = parser.parse_args(argv)

    import napari
    import numpy as np

    from napari_chromosome_sort._widgets.launch import dock_all
    from napari_chromosome_sort.io import read_image

    work = Path(tempfile.mkdtemp(prefix="chromosort_screens_"))
    viewer = napari.Viewer(title="napari-chromosome-sort", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    image = read_image(SPREAD)
    viewer.add_image(image, name="spread 1")
    widgets = dock_all(viewer)
    segment = widgets["Segment spread"]
    label = widgets["Label chromosomes"]
    train = widgets["Train classifier"]
    predict = widgets["Predict & explain"]

    # 1. segment + review
    show_dock(viewer, "Segment spread")
    segment.run()
    wait(lambda: "spread 1 objects" in viewer.layers and not segment.running)
    objects = viewer.layers["spread 1 objects"]
    kept = objects.features.loc[objects.features["status"] == "chromosome", "label"].astype(int)
    areas = objects.features.set_index("label").loc[kept, "area"]
    segment.set_status(int(areas.idxmin()), "rejected")  # e.g. a speck the user rejects
    segment.select(int(kept.iloc[0]))
    settle(0.5)
    zoom_to_chromosomes(viewer, objects.features)
    shoot(viewer, "segment")

    # 2. model: train on the WT crops (or import the published one)
    model_path = work / "wt_squeezenet.safetensors"
    show_dock(viewer, "Train classifier")
    if args.fast or not WT_CROPS.is_dir():
        from napari_chromosome_sort.model_io import import_state_dict, save_model

        save_model(import_state_dict(PUBLISHED, classes=["A", "B", "C"]), model_path)
        train.results.setText(f"Model imported to <b>{model_path}</b>")
    else:
        train.folder.value = str(WT_CROPS)
        train.set_weights(str(FEATURE_WEIGHTS))
        train.model_file.value = str(model_path)
        train.cv_folds.setValue(args.cv)
        train.option_widgets["views"].value = args.views
        train.feature_cache = str(Path.home() / ".cache" / "chromosort_screenshots")
        train.start()
        train.worker.yielded.connect(lambda r: print(f"  {r.step}/{r.total} {r.message}"))
        wait(lambda: not train.running)
        if not model_path.is_file():
            print("training failed", file=sys.stderr)
            return 1
    shoot(viewer, "train")

    # 3. predict + explain (click an object)
    show_dock(viewer, "Predict & explain")
    predict.model_file.value = str(model_path)
    predict.image_picker.set_layer(viewer.layers["spread 1"])
    predict.objects_picker.set_layer(objects)
    predict.run()
    wait(lambda: not predict.running)
    table = predict.prediction.table
    chosen = int(table["label"].iloc[len(table) // 2])
    predict.show_object(chosen)
    objects.visible = False
    viewer.layers["spread 1 Grad-CAM"].opacity = 0.7
    zoom_to_chromosomes(viewer, objects.features)
    shoot(viewer, "predict")

    # 4. label: the same spread, a few chromosomes labelled (classes from the model's calls,
    #    standing in for an expert's), one selected with its crop preview
    for name in ("spread 1 predicted classes", "spread 1 Grad-CAM", "spread 1 class names"):
        viewer.layers[name].visible = False
    objects.visible = True
    show_dock(viewer, "Label chromosomes")
    label.folder.value = str(work / "dataset")
    label.classes_edit.setText(",".join(predict.model.classes))
    label._classes_changed()
    label.labels_picker.set_layer(objects)
    label._labels_changed()
    calls = dict(zip(table["label"].astype(int), table["class"].astype(str), strict=True))
    for obj in list(calls)[:12]:
        label.select(obj)
        label.assign(calls[obj])
    label.step(1)
    viewer.layers.selection.active = objects
    zoom_to_chromosomes(viewer, objects.features)
    shoot(viewer, "label")

    viewer.close()
    print("all screenshots in", OUT)
    return (
        0
        if np.all(
            [(OUT / f"widget_{n}.png").is_file() for n in ("segment", "train", "predict", "label")]
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
