"""Train classifier widget: background training, live progress, cancel, responsive GUI."""

from __future__ import annotations

import time

import pytest
from qtpy.QtCore import QTimer

from napari_chromosome_sort._widgets.train import TrainWidget

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def crop_folder(tmp_path_factory):
    from napari_chromosome_sort import synthetic

    return synthetic.make_crop_dataset(
        tmp_path_factory.mktemp("crops") / "set", n_per_class=8, seed=0, size=48
    )


def _widget(viewer, folder, model_path, cv_folds=2):
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.folder.value = str(folder)
    widget.model_file.value = str(model_path)
    widget.set_weights("random")  # never the network in tests
    widget.cv_folds.setValue(cv_folds)
    options = widget.option_widgets
    options["input_size"].value = 64
    options["views"].value = 1
    options["inner_folds"].value = 2
    options["max_iter"].value = 50
    return widget


def test_train_completes_and_reports(make_napari_viewer, qtbot, tmp_path, crop_folder):
    viewer = make_napari_viewer()
    model_path = tmp_path / "model.safetensors"
    widget = _widget(viewer, crop_folder, model_path)
    assert widget.config().weights == "random"

    gaps = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    widget.train_button.click()
    assert widget.running and not widget.train_button.isEnabled()
    assert widget.cancel_button.isEnabled() and not widget.backbone.isEnabled()
    last[0] = time.perf_counter()
    gaps.clear()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    timer.stop()

    assert model_path.is_file()
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert widget.history or widget.progress.value() == widget.progress.maximum()
    assert str(model_path) in widget.results.text()
    assert "concordance" in widget.results.text() and "κ" in widget.results.text()
    assert widget.confusion.rowCount() == 3 and widget.confusion.columnCount() == 3
    # the event loop kept turning while training ran in the worker thread (how long the window
    # may freeze is a benchmark, benchmarks/bench_predict_viewer.py, not a timed assertion)
    assert len(gaps) > 10

    from napari_chromosome_sort.classification.models.model_io import load_model

    model = load_model(model_path)
    assert list(model.classes) == ["A", "B", "C"]


def test_cancel_leaves_previous_model(make_napari_viewer, qtbot, tmp_path, crop_folder):
    viewer = make_napari_viewer()
    model_path = tmp_path / "model.safetensors"
    model_path.write_bytes(b"previous model")
    widget = _widget(viewer, crop_folder, model_path, cv_folds=3)
    widget.start()
    worker = widget.worker
    aborted, reports = [], []
    worker.aborted.connect(lambda: aborted.append(True))
    worker.yielded.connect(reports.append)
    qtbot.waitUntil(lambda: len(reports) > 0, timeout=60000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert aborted
    assert model_path.read_bytes() == b"previous model"
    assert not list(tmp_path.glob(".model.safetensors*"))
    assert "Cancelled" in widget.status.text()
    assert widget.train_button.isEnabled()


def test_missing_folder_is_a_notification(make_napari_viewer, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    widget.folder.value = str(tmp_path / "nope")
    shown = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.train.show_error", shown.append)
    widget.start()
    assert shown and "does not exist" in shown[0]
    assert not widget.running


def test_bad_dataset_error_is_notified(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """A core ChromosortError in the worker becomes a notification with the reason."""
    viewer = make_napari_viewer()
    (tmp_path / "only_one_class" / "A").mkdir(parents=True)
    widget = _widget(viewer, tmp_path / "only_one_class", tmp_path / "m.safetensors")
    shown = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.shared.workers.show_error", shown.append)
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert shown and "Train classifier" in shown[0]
    assert not (tmp_path / "m.safetensors").exists()


def test_label_a_few_then_train_saves_a_model(
    make_napari_viewer, qtbot, tmp_path, segment_in_viewer
):
    """Label 2 B and 3 C crops (no A), train with 5 requested folds: a model, 2-fold CV."""
    from napari_chromosome_sort._widgets.label import LabelWidget
    from napari_chromosome_sort.synthetic import make_spread

    viewer = make_napari_viewer()
    viewer.add_image(make_spread(seed=0).image, name="spread")
    _segment, layer = segment_in_viewer(viewer)
    folder = tmp_path / "dataset"
    label = LabelWidget(viewer)
    label.folder.value = str(folder)
    label.labels_picker.value = layer
    label._labels_changed()
    for cls in "BBCCC":
        label.step(1)
        assert label.current
        label.assign(cls)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["B", "C"]

    warnings = []
    import napari_chromosome_sort._widgets.train as train_module

    model_path = tmp_path / "model.safetensors"
    widget = _widget(viewer, folder, model_path, cv_folds=5)
    original = train_module.show_warning
    train_module.show_warning = warnings.append
    try:
        widget.start()
    finally:
        train_module.show_warning = original
    assert widget.running, "the check before training refused the labelled set"
    assert warnings and "only 2 crops" in warnings[0] and "2-fold" in warnings[0]
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert model_path.is_file()
    from napari_chromosome_sort.classification.models.model_io import load_model

    assert list(load_model(model_path).classes) == ["B", "C"]
    assert "2-fold CV concordance" in widget.results.text()


def test_one_crop_class_trains_without_cv(make_napari_viewer, qtbot, tmp_path):
    from napari_chromosome_sort.synthetic import make_crop_dataset

    folder = make_crop_dataset(tmp_path / "set", n_per_class=3, seed=1, size=48)
    for extra in sorted((folder / "A").iterdir())[1:]:
        extra.unlink()
    viewer = make_napari_viewer()
    model_path = tmp_path / "model.safetensors"
    widget = _widget(viewer, folder, model_path, cv_folds=5)
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert model_path.is_file()
    assert "without the cross-validated concordance" in widget.results.text()
    assert "concordance" not in widget.results.text().split("<i>")[0]


def test_a_model_near_chance_from_few_crops_is_a_warning(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Five crops per class: the widget says the classes have too few crops and the
    cross-validated agreement is no better than always calling one class, in the results and
    as a notification; and (issue 31) what the measured learning curve says of more crops,
    recorded in the model file."""
    from napari_chromosome_sort import synthetic

    folder = synthetic.make_crop_dataset(tmp_path / "few", n_per_class=5, seed=3, size=48)
    viewer = make_napari_viewer()
    widget = _widget(viewer, folder, tmp_path / "few.safetensors", cv_folds=5)
    shown = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.train.show_warning", shown.append)
    widget.train_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    text = widget.results.text()
    assert "Too few crops to learn from in class A (5), B (5), C (5)" in text
    metrics = widget.model.metadata["metrics"]
    if metrics.get("kappa", 1.0) < 0.4:  # random weights: agreement near chance
        assert "Near chance" in text and any("Near chance" in s for s in shown)
    assert any("Too few crops" in s for s in shown)
    from napari_chromosome_sort.classification.models.model_io import load_model

    curve = widget.model.metadata["training"]["learning_curve"]
    assert {p["per_class"] for p in curve} == {2, 3, 4} and len(curve) == 3 * 5  # 5 folds
    assert "learning curve of a linear head (κ " in text and " with 4 crops per class)" in text
    advice = ("About ", "How many more crops", "Agreement still rises")
    assert any(s.startswith(f"Train classifier: {a}") for s in shown for a in advice), shown
    saved = load_model(tmp_path / "few.safetensors").metadata["training"]["learning_curve"]
    assert saved == curve


def test_train_beside_reference_crops_records_the_spread_mix_choice(
    make_napari_viewer, qtbot, tmp_path, own_and_reference
):
    """Reference crops in the widget: trained beside them (the crops of 3 spreads choose the
    spread-mix handling, recorded in the model and said), cross-validation skipped with a note."""
    from napari_chromosome_sort._widgets.train import REFERENCE_CV_NOTE
    from napari_chromosome_sort.classification.models.model_io import read_metadata

    own, ref = own_and_reference
    viewer = make_napari_viewer()
    model_path = tmp_path / "model.safetensors"
    widget = _widget(viewer, own.root, model_path, cv_folds=2)
    widget.reference.value = str(tmp_path / "missing")
    widget.start()  # a missing reference folder is refused before any work
    assert not widget.running and not model_path.exists()
    widget.reference.value = str(ref)
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    meta = read_metadata(model_path)
    assert meta["training"]["n"] == 12 + 12  # own + reference crops
    record = meta["prediction_priors"]
    text = widget.results.text()
    assert REFERENCE_CV_NOTE in text and "chosen leave-one-spread-out over 3 spreads" in text
    assert ("re-estimates each spread's class mix" in text) == record["adapt"]
    assert "accuracy" not in meta.get("metrics", {})  # no cross-validation of the own crops
