"""Segmentation time: a clean spread vs the same spread with camera noise (denoised first).

Reported as ratios against the clean spread, timed in the same process (CPU time, best of
``--repeats``), so the figure does not depend on the machine's speed or load. Uses a real Giemsa
spread when ``../shared`` has one, otherwise a synthetic 1024 x 1440 spread.

    OMP_NUM_THREADS=1 python benchmarks/bench_segmentation.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_chromosome_sort.segmentation import segment_spread

SHARED_SPREAD = (
    Path(__file__).resolve().parents[2] / "shared/data/giemsa_spreads_ddx11/images/2.png"
)


def _spread() -> tuple[str, np.ndarray]:
    if SHARED_SPREAD.exists():
        from napari_chromosome_sort.files.io import read_image

        return SHARED_SPREAD.name, read_image(SHARED_SPREAD)
    from napari_chromosome_sort.synthetic import make_spread

    spread = make_spread(seed=0, n_chromosomes=60, shape=(1024, 1440))
    return "synthetic 1024 x 1440", spread.image


def _cpu_seconds(image: np.ndarray, repeats: int) -> tuple[float, dict]:
    best, stats = float("inf"), {}
    for _ in range(repeats):
        start = time.process_time()
        stats = segment_spread(image).stats
        best = min(best, time.process_time() - start)
    return best, stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    name, image = _spread()
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    clean_s, clean_stats = _cpu_seconds(image, args.repeats)
    noisy_s, noisy_stats = _cpu_seconds(noisy, args.repeats)
    assert not clean_stats["denoised"] and noisy_stats["denoised"]
    print(f"spread: {name}, {image.shape[1]} x {image.shape[0]} px")
    ratio = noisy_s / clean_s
    print(f"clean                   : {clean_s:6.2f} s CPU   (baseline)")
    print(f"noise sigma 10, denoised: {noisy_s:6.2f} s CPU   {ratio:.1f}x the clean spread")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
