"""Render screenshots of every plugin widget in use on a real Giemsa and a real DAPI spread.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/make_screenshots.py [--fast]

The napari window is 1920x1080. Writes docs/images/widget_<widget>_<stain>.png (segment, label,
predict for each of the Giemsa spread shipped as the plugin's sample and a DAPI spread of the
ADIR set), widget_train.png and widget_readout.png, each downscaled to 1280 px wide.

The Train widget is shown training on a small subset of the wild-type crops (``--per-class``
crops per class, local ImageNet SqueezeNet features file, no network) — a couple of minutes on a
laptop CPU; ``--fast`` imports the published model instead. Predict uses the bundled wild-type
model, or ``--model FILE``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GIEMSA = REPO / "src" / "napari_chromosome_sort" / "data" / "giemsa_ddx11_spread_3.png"
DAPI = SHARED / "data" / "adir_dapi_spreads" / "A01__XY" / "A0101XYD.tif"
WT_CROPS = SHARED / "data" / "ikemoto_crops_wt"
FEATURE_WEIGHTS = SHARED / "weights" / "squeezenet1_1_imagenet_features.pth"
PUBLISHED = SHARED / "weights" / "ikemoto2022_squeezenet_1.pth"
OUT = REPO / "docs" / "images"
WIDTH = 1280  # saved screenshots are downscaled to this width


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
    from napari_chromosome_sort._widgets.shared.layers import camera

    kept = features[features["status"] == "chromosome"]
    y0, x0 = kept["bbox_y0"].min() - pad, kept["bbox_x0"].min() - pad
    y1, x1 = kept["bbox_y1"].max() + pad, kept["bbox_x1"].max() + pad
    camera(viewer).center = ((y0 + y1) / 2, (x0 + x1) / 2)
    height, width = viewer.window._qt_viewer.canvas.size
    camera(viewer).zoom = 0.95 * min(height / (y1 - y0), width / (x1 - x0))


def shoot(viewer, name):
    """Screenshot of the whole window, downscaled to WIDTH px wide."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # a finished job's toast would cover the canvas
    settle(1.0)
    path = OUT / f"widget_{name}.png"
    image = viewer.screenshot(canvas_only=False, flash=False)
    picture = Image.fromarray(image[..., :3])
    if picture.width > WIDTH:
        height = round(picture.height * WIDTH / picture.width)
        picture = picture.resize((WIDTH, height), Image.LANCZOS)
    picture.save(path, optimize=True)
    print(f"wrote {path} ({picture.width}x{picture.height})")
    return path


def small_training_set(folder: Path, per_class: int) -> Path:
    """The first ``per_class`` crops of each class, copied (an ImageFolder-style set)."""
    for cls in sorted(p for p in WT_CROPS.iterdir() if p.is_dir()):
        (folder / cls.name).mkdir(parents=True)
        for crop in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(crop, folder / cls.name / crop.name)
    return folder


def segment_spread(viewer, segment, name):
    segment.image_picker.value = viewer.layers[name]
    segment.run()
    wait(lambda: f"{name} objects" in viewer.layers and not segment.running)
    objects = viewer.layers[f"{name} objects"]
    features = objects.features
    kept = features.loc[features["status"] == "chromosome", "label"].astype(int)
    areas = features.set_index("label").loc[kept, "area"]
    segment.set_status(int(areas.idxmin()), "rejected")  # e.g. a speck the user rejects
    segment.select(int(kept.iloc[len(kept) // 2]))
    settle(0.5)
    zoom_to_chromosomes(viewer, features)
    return objects


def predict_spread(viewer, predict, name, objects, model_path=None):
    """Predict with ``model_path``, or with the bundled wild-type model when None."""
    if model_path is None:
        predict.model_choice.setCurrentIndex(0)
    else:
        predict.model_file.value = str(model_path)
    predict.image_picker.value = viewer.layers[name]
    predict.objects_picker.value = objects
    predict.run()
    wait(lambda: not predict.running)
    table = predict.prediction.table
    predict.show_object(int(table["label"].iloc[len(table) // 2]))
    objects.visible = False
    zoom_to_chromosomes(viewer, objects.features)
    return table


def label_spread(viewer, label, name, objects, table, classes, folder):
    for suffix in ("predicted classes", "Grad-CAM", "class names"):
        viewer.layers[f"{name} {suffix}"].visible = False
    objects.visible = True
    label.folder.value = str(folder)
    label.classes_edit.setText(",".join(classes))
    label._classes_changed()
    label.labels_picker.value = objects
    label._labels_changed()
    calls = dict(zip(table["label"].astype(int), table["class"].astype(str), strict=True))
    for obj in list(calls)[:12]:
        label.select(obj)
        label.assign(calls[obj])
    label.step(1)
    viewer.layers.selection.active = objects
    zoom_to_chromosomes(viewer, objects.features)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="import the published model")
    parser.add_argument("--model", help="a ready model file (no training)")
    parser.add_argument("--per-class", type=int, default=20, help="WT crops per class to train")
    parser.add_argument("--views", type=int, default=1, help="dihedral views for training")
    parser.add_argument("--cv", type=int, default=2, help="cross-validation folds")
    args = parser.parse_args(argv)

    import napari

    from napari_chromosome_sort._widgets.launch import dock_all
    from napari_chromosome_sort.files.io import read_image

    work = Path(tempfile.mkdtemp(prefix="chromosort_screens_"))
    viewer = napari.Viewer(title="napari-chromosome-sort", show=True)
    viewer.window._qt_window.showNormal()
    viewer.window._qt_window.resize(1920, 1080)
    settle(1.0)
    widgets = dock_all(viewer)
    segment = widgets["Segment spread"]
    label = widgets["Label chromosomes"]
    train = widgets["Train classifier"]
    predict = widgets["Predict and explain"]
    readout = widgets["Type readout"]
    spreads = {"giemsa": ("Giemsa spread 3", GIEMSA), "dapi": ("DAPI A0101", DAPI)}
    written = []

    # the model: trained on a few WT crops per class, or a ready/published one
    model_path = work / "wt_squeezenet.safetensors"
    if args.model:
        model_path = Path(args.model)
    elif args.fast or not WT_CROPS.is_dir():
        from napari_chromosome_sort.classification.models.model_io import (
            import_state_dict,
            save_model,
        )

        save_model(import_state_dict(PUBLISHED, classes=["A", "B", "C"]), model_path)

    for stain, (name, path) in spreads.items():
        for layer in viewer.layers:
            layer.visible = False
        viewer.add_image(read_image(path), name=name)

        show_dock(viewer, "Segment spread")
        objects = segment_spread(viewer, segment, name)
        written.append(shoot(viewer, f"segment_{stain}"))

        if stain == "giemsa" and not model_path.is_file():
            show_dock(viewer, "Train classifier")
            subset = small_training_set(work / "wt_subset", args.per_class)
            train.folder.value = str(subset)
            train.set_weights(str(FEATURE_WEIGHTS))
            train.model_file.value = str(model_path)
            train.cv_folds.setValue(args.cv)
            train.option_widgets["views"].value = args.views
            train.option_widgets["input_size"].value = 224
            train.start()
            train.worker.yielded.connect(lambda r: print(f"  {r.step}/{r.total} {r.message}"))
            wait(lambda: not train.running)
            if not model_path.is_file():
                print("training failed", file=sys.stderr)
                return 1
            written.append(shoot(viewer, "train"))

        show_dock(viewer, "Predict and explain")
        table = predict_spread(viewer, predict, name, objects, args.model)
        written.append(shoot(viewer, f"predict_{stain}"))

        show_dock(viewer, "Label chromosomes")
        label_spread(viewer, label, name, objects, table, predict.model.classes, work / "dataset")
        written.append(shoot(viewer, f"label_{stain}"))

    # readout: the two spreads' predicted classes as two samples
    for layer in viewer.layers:
        layer.visible = False
    name = spreads["giemsa"][0]
    for suffix in ("", " predicted classes"):
        viewer.layers[f"{name}{suffix}"].visible = True
    viewer.reset_view()
    show_dock(viewer, "Type readout")
    from qtpy.QtCore import Qt

    for i in range(readout.layer_list.rowCount()):
        item = readout.layer_list.item(i, 0)
        wanted = item.text().endswith("predicted classes")
        item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)
    readout.compute()
    written.append(shoot(viewer, "readout"))

    viewer.close()
    print("all screenshots in", OUT)
    return 0 if all(p.is_file() for p in written) else 1


if __name__ == "__main__":
    sys.exit(main())
