"""Predict in the viewer against the command line's compute, and the window's longest stall.

In one process, on one spread, with the bundled model: the command line's compute
(``predict_spread(model, image, gradcam=True)``, model loaded, as ``chromosort predict --spreads
--gradcam`` runs each spread) and the viewer's Predict through a real napari viewer (the
Predict widget docked, the button clicked, until the calls, the Grad-CAM and the class names are
painted). The two alternate ``--repeats`` times after one warm-up of each (the ONNX export and
the first imports are not counted), so that the machine's load moving between them stays out of
the ratio. Reports:

* ratio = median viewer time / median command-line compute (target <= 1.3);
* GUI stall = the longest gap between ticks of a 10 ms QTimer during each Predict, less the
  10 ms period (target <= 100 ms), and the worst of the runs; beside it the GUI thread's own
  CPU time in its busiest gap (``time.thread_time``: the stall as an idle machine of the same
  speed would see it, as the wall-clock gap grows with the machine's load); the first Predict
  after napari started (the warm-up, when the heavy libraries are imported) separately;
* the frame floor: the longest such gap while the canvas only redraws the same layers (zoomed a
  little, no Predict), measured after the runs: the display's own time per frame, which every
  stall that includes a redraw contains (tens of ms with a GPU; hundreds with software OpenGL
  on a loaded machine, as under ``xvfb-run``).

The spread is 2.png of the shared Giemsa spreads (102 chromosomes) when present, else a
synthetic one. Needs a display (``xvfb-run -a python benchmarks/bench_predict_viewer.py``).
Reports figures; never asserts timings.

    xvfb-run -a python benchmarks/bench_predict_viewer.py [--repeats 3] [--spread PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPREAD = REPO.parent / "shared" / "data" / "giemsa_spreads_ddx11" / "images" / "2.png"
TICK_MS = 10
TIMEOUT_S = 900


def load_spread(path: str | None) -> tuple[np.ndarray, str]:
    """The spread to predict and where it came from."""
    from napari_chromosome_sort.files.io import read_image

    chosen = Path(path) if path else SPREAD
    if chosen.is_file():
        return read_image(chosen), str(chosen)
    from napari_chromosome_sort import synthetic

    return synthetic.make_spread(seed=0, shape=(1024, 1024), n_chromosomes=90).image, "synthetic"


def cli_seconds(model, image) -> tuple[float, int]:
    """Wall time of the command line's compute of one spread, and its chromosomes."""
    from napari_chromosome_sort.classification.predict import predict_spread

    start = time.perf_counter()
    result = predict_spread(model, image, gradcam=True)
    return time.perf_counter() - start, len(result.table)


class StallMeter:
    """Longest gap between ticks of a QTimer (the event loop's responsiveness), and the most CPU
    time the GUI thread spent between two ticks (its own work: what the gap would be on an idle
    machine, without the waits for the other threads and processes)."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.last = self.last_cpu = None
        self.longest = self.longest_cpu = 0.0

    def _tick(self):
        now, cpu = time.perf_counter(), time.thread_time()
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
            self.longest_cpu = max(self.longest_cpu, cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    def start(self):
        self.last = self.last_cpu = None
        self.longest = self.longest_cpu = 0.0
        self.timer.start()

    def stop(self) -> float:
        """The longest stall (s) beyond the timer's period."""
        self.timer.stop()
        return max(self.longest - TICK_MS / 1000, 0.0)


def _choose_image(widget, layer) -> None:
    picker = widget.image_picker
    if hasattr(picker, "set_layer"):  # the widget before magicgui's combo boxes
        picker.set_layer(layer)
    else:
        picker.value = layer


def viewer_seconds(viewer, widget, app, meter: StallMeter, name: str) -> tuple[float, float]:
    """Wall time from the Predict click on image layer ``name`` to its painted calls, and the
    longest stall. Each run predicts its own copy of the spread (as a new spread would be), so
    no layer is removed while the benchmark runs."""
    _choose_image(widget, viewer.layers[name])
    app.processEvents()
    meter.start()
    start = time.perf_counter()
    widget.run_button.click()
    while widget.running:
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - start > TIMEOUT_S:
            raise TimeoutError("Predict did not finish")
    app.processEvents()  # the paint of the new layers
    elapsed = time.perf_counter() - start
    stall = meter.stop()
    if f"{name} predicted classes" not in viewer.layers:
        raise RuntimeError(f"Predict showed nothing: {widget.status.text()}")
    return elapsed, stall


def frame_floor(viewer, app, meter: StallMeter, frames: int = 10) -> float:
    """The longest stall while the canvas only redraws its layers (zoomed a little per frame)."""
    from napari_chromosome_sort._widgets.shared.layers import camera

    view = camera(viewer)
    meter.start()
    for frame in range(frames):
        view.zoom = view.zoom * (1.001 if frame % 2 else 1 / 1.001)
        deadline = time.perf_counter() + 0.1
        while time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.001)
    return meter.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spread", default=None, help="a spread image (default: 2.png)")
    args = parser.parse_args(argv)

    import napari

    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort._widgets.predict import PredictWidget
    from napari_chromosome_sort.classification.models.model_io import load_model

    image, source = load_spread(args.spread)
    model = load_model(bundled_model_path())
    viewer = napari.Viewer(show=True)
    app = napari.qt.get_qapp()
    for run in range(args.repeats + 1):
        viewer.add_image(image, name=f"spread {run}")
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    meter = StallMeter()
    cli_seconds(model, image)  # warm-up: ONNX export, first imports
    _, first_stall = viewer_seconds(viewer, widget, app, meter, "spread 0")
    cli, gui, stalls, busy = [], [], [], []
    for run in range(1, args.repeats + 1):
        seconds, kept = cli_seconds(model, image)
        cli.append(seconds)
        seconds, stall = viewer_seconds(viewer, widget, app, meter, f"spread {run}")
        gui.append(seconds)
        stalls.append(stall)
        busy.append(meter.longest_cpu)
        print(
            f"run {len(gui)}: command line {cli[-1]:.2f} s, viewer {seconds:.2f} s, "
            f"longest stall {1000 * stall:.0f} ms (GUI thread CPU {1000 * busy[-1]:.0f} ms)",
            flush=True,
        )
    floor = frame_floor(viewer, app, meter)
    ratio = statistics.median(gui) / statistics.median(cli)
    print(f"spread: {source} ({kept} chromosomes), {args.repeats} repeats")
    print(f"command line compute: {', '.join(f'{s:.2f}' for s in cli)} s")
    print(f"viewer Predict:       {', '.join(f'{s:.2f}' for s in gui)} s")
    print(f"ratio viewer / command line (medians): {ratio:.2f} (target <= 1.3)")
    print(
        f"longest GUI stall per run: {', '.join(f'{1000 * s:.0f}' for s in stalls)} ms; "
        f"worst {1000 * max(stalls):.0f} ms (target <= 100 ms)"
    )
    print(
        f"GUI thread's CPU in its busiest gap per run: {', '.join(f'{1000 * s:.0f}' for s in busy)}"
        f" ms; worst {1000 * max(busy):.0f} ms"
    )
    print(
        f"longest GUI stall of the first Predict after napari started: {1000 * first_stall:.0f} ms"
    )
    print(f"frame floor (the canvas only redrawing, no Predict): {1000 * floor:.0f} ms")


if __name__ == "__main__":
    main()
