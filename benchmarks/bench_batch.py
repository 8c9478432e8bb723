"""``chromosort batch`` against the same spreads run in this process: CPU and kernel time per
spread.

Both runs go through :func:`batch.run_batch` on copies of the same spreads (the shared Giemsa
spreads when present, else synthetic ones), with the bundled wild-type model and Grad-CAM:

* in process (``scheduler="serial"``, one torch thread, as a batch worker has);
* a local Dask cluster of ``--workers`` processes of one thread each (the default of
  ``chromosort batch``).

Each finished spread records what it cost its process (``DONE``: wall, user and kernel CPU
seconds); the first spread of each worker loads the model and builds its graphs, so the figure
is the median over the others. Reports the batch/in-process ratio of CPU seconds per spread and
the kernel's share of the CPU time; never asserts timings.

    .venv/bin/python benchmarks/bench_batch.py [--copies 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPREADS = REPO.parent / "shared" / "data" / "giemsa_spreads_ddx11" / "images"
MODEL = REPO / "src" / "napari_chromosome_sort" / "data" / "wt_squeezenet1_1.safetensors"


def make_input(folder: Path, copies: int) -> str:
    """``copies`` of every shared Giemsa spread (else of synthetic spreads) in one sample."""
    sample = folder / "sample"
    sample.mkdir(parents=True)
    sources = sorted(SPREADS.glob("*.png")) if SPREADS.is_dir() else []
    if not sources:
        from PIL import Image

        from napari_chromosome_sort.synthetic import make_spread

        for seed in range(3):
            path = folder / f"synthetic_{seed}.png"
            Image.fromarray(make_spread(seed=seed, n_chromosomes=60).image).save(path)
            sources.append(path)
    for copy in range(copies):
        for source in sources:
            shutil.copy(source, sample / f"{source.stem}_{copy}{source.suffix}")
    return "shared Giemsa spreads" if SPREADS.is_dir() else "synthetic spreads"


def run(input_dir: Path, out_dir: Path, scheduler: str | None, workers: int) -> list[dict]:
    """Run the batch; the cost of every spread it computed (first one of each process left
    out)."""
    from napari_chromosome_sort.batch import run_batch
    from napari_chromosome_sort.progress import run_to_end

    run_to_end(run_batch(input_dir, MODEL, out_dir, scheduler=scheduler, workers=workers))
    costs = [json.loads(p.read_text())["cost"] for p in sorted(out_dir.glob("spreads/*/*/DONE"))]
    per_process = 1 if scheduler == "serial" else workers
    costs.sort(key=lambda c: c["wall_s"], reverse=True)  # the first of a process is the slowest
    return costs[per_process:]


def summary(costs: list[dict]) -> dict:
    """Median CPU seconds per spread and the kernel's share of them."""
    cpu = [c["user_s"] + c["kernel_s"] for c in costs]
    kernel = sum(c["kernel_s"] for c in costs) / max(sum(cpu), 1e-9)
    return {
        "spreads": len(costs),
        "cpu_s": statistics.median(cpu),
        "wall_s": statistics.median(c["wall_s"] for c in costs),
        "kernel_share": kernel,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = make_input(tmp / "in", args.copies)
        serial = summary(run(tmp / "in", tmp / "serial", "serial", 1))
        batch = summary(run(tmp / "in", tmp / "batch", None, args.workers))
    print(f"{source}, {args.copies} copies each; bundled WT model, Grad-CAM on")
    print("run                    spreads  CPU s/spread  wall s/spread  kernel share")
    for name, s in (("in process (1 thread)", serial), (f"batch, {args.workers} workers", batch)):
        print(
            f"{name:22s} {s['spreads']:7d} {s['cpu_s']:13.2f} {s['wall_s']:14.2f} "
            f"{100 * s['kernel_share']:12.1f} %"
        )
    print(f"batch / in process, CPU s per spread: {batch['cpu_s'] / serial['cpu_s']:.2f}x")


if __name__ == "__main__":
    main()
