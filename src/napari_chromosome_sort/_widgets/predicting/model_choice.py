"""Which classifier Predict runs: the bundled model, the models of the viewer's session (trained
or imported since napari started) or a model file; and the import of a published model."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import FileEdit
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QComboBox, QFileDialog, QInputDialog, QPushButton, QWidget

from napari_chromosome_sort._sample_data import bundled_model_path
from napari_chromosome_sort._widgets.session import session_of
from napari_chromosome_sort._widgets.shared.workers import report_error
from napari_chromosome_sort.classification.models.registry import BACKBONES
from napari_chromosome_sort.session import IMPORTED, OfferedModel

BUNDLED_MODEL = "bundled wild-type model (A/B/C)"
MODEL_FILE = "model file below"


class ModelChoice:
    """The model combo box (bundled, the session's models, a file), the file field and the
    import button of one viewer's Predict widget."""

    def __init__(self, viewer, parent: QWidget):
        self.parent = parent
        self.session = session_of(viewer)
        self.combo = QComboBox()
        self.combo.setToolTip(
            "Which classifier calls the chromosomes: the bundled wild-type model (A/B/C, trained "
            "on the wild-type crops of Ikemoto et al. 2022), a model trained since napari "
            "started, or a file"
        )
        self.file = FileEdit(mode="r", filter="*.safetensors")
        self.file.native.setToolTip("A model file saved by 'Train classifier'")
        self.import_button = QPushButton("Import published model (.pth)…")
        self.import_button.setToolTip(
            "Use a plain torchvision model file, such as the published SqueezeNet of Ikemoto et "
            "al. 2022: name its classes in output order; it is converted once and offered above"
        )
        self._fill()
        self.file.changed.connect(lambda *_: self._select(MODEL_FILE))
        self.import_button.clicked.connect(self._choose_published)
        self.session.model_added.connect(self._on_model_added)  # held weakly by psygnal

    def _fill(self) -> None:
        self.combo.clear()
        self.combo.addItem(BUNDLED_MODEL, str(bundled_model_path()))
        for offered in self.session.models:
            self.combo.addItem(offered.title, offered.path)
        self.combo.addItem(MODEL_FILE, None)

    def _select(self, text: str) -> None:
        self.combo.setCurrentIndex(max(self.combo.findText(text), 0))

    def _on_model_added(self, offered: OfferedModel) -> None:
        """A model just trained (or imported) in this viewer is offered and chosen."""
        try:
            self._fill()
        except RuntimeError:  # the widget was closed (its Qt object deleted): stop listening
            self.session.model_added.disconnect(self._on_model_added)
            return
        self._select(offered.title)

    def path(self) -> str | None:
        """The chosen model file (None, with a notification, when the file is missing)."""
        chosen = self.combo.currentData()
        if chosen:
            return str(chosen)
        path = Path(str(self.file.value))
        if not path.is_file():
            show_error(
                f"Predict: model file {path} does not exist: choose a model file, a model "
                "trained since napari started or the bundled wild-type model."
            )
            return None
        return str(path)

    def _choose_published(self) -> None:
        parent = self.parent
        path, _ = QFileDialog.getOpenFileName(parent, "Published model", "", "PyTorch (*.pth *.pt)")
        if not path:
            return
        classes, ok = QInputDialog.getText(
            parent, "Classes", "Class names in the model's output order:", text="A,B,C"
        )
        if not ok:
            return
        names = list(BACKBONES)
        backbone, ok = QInputDialog.getItem(
            parent, "Network", "The model's network:", names, 0, False
        )
        if ok:
            self.import_published(path, classes, backbone)

    def import_published(self, path, classes: str, backbone: str = "squeezenet1_1") -> str | None:
        """Convert a plain torchvision ``state_dict`` (read without unpickling) into a model file
        in the user cache, offer it and choose it; returns its path (None after an error)."""
        from napari_chromosome_sort.classification.models.fast_inference import user_cache_dir
        from napari_chromosome_sort.classification.models.model_io import (
            import_state_dict,
            save_model,
        )  # torch: imported when a model is converted, not when napari starts

        names = [c.strip() for c in str(classes).split(",") if c.strip()]
        try:
            model = import_state_dict(path, names, backbone)
            folder = user_cache_dir() / "imported"
            folder.mkdir(parents=True, exist_ok=True)
            out = save_model(model, folder / f"{Path(path).stem}.safetensors")
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Import model")
            return None
        self.session.add_model(out, IMPORTED)
        return str(out)
