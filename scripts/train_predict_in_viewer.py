"""Train on synthetic crops, then predict a synthetic spread, through the plugin's docks in a real
napari viewer; exits 0 when both finish. `scripts/check_default_torch.sh` runs it with the
registry's default (CUDA) torch under a software OpenGL display, where importing triton after the
viewer's GL context exists used to kill the process."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_chromosome_sort import synthetic
from napari_chromosome_sort._widgets.predict import PredictWidget
from napari_chromosome_sort._widgets.train import TrainWidget


def wait(widget, seconds: float = 600) -> None:
    """Turn the event loop until ``widget`` has finished its job."""
    end = time.monotonic() + seconds
    while widget.running:
        if time.monotonic() > end:
            sys.exit(f"{type(widget).__name__} did not finish in {seconds} s")
        QApplication.processEvents()
        time.sleep(0.02)


def main() -> None:
    viewer = napari.Viewer(show=False)
    viewer.screenshot()  # the GL context exists and has drawn before torch is imported
    root = Path(tempfile.mkdtemp())
    crops = synthetic.make_crop_dataset(root / "crops", n_per_class=6, seed=0, size=48)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    train.folder.value = str(crops)
    train.model_file.value = str(root / "model.safetensors")
    train.set_weights("random")
    train.cv_folds.setValue(2)
    for name, value in {"input_size": 64, "views": 1, "inner_folds": 2, "max_iter": 50}.items():
        train.option_widgets[name].value = value
    train.train_button.click()
    wait(train)
    assert (root / "model.safetensors").is_file(), "training wrote no model"

    spread = synthetic.make_spread(seed=0)
    viewer.add_image(spread.image, name="spread")
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict)
    predict.model_file.value = str(root / "model.safetensors")
    predict.image_picker.value = viewer.layers["spread"]
    predict.run_button.click()
    wait(predict)
    assert "spread predicted classes" in viewer.layers, "prediction painted no classes"
    viewer.screenshot()
    import torch

    print(f"train and predict finished in the viewer with torch {torch.__version__}")
    viewer.close()


if __name__ == "__main__":
    main()
