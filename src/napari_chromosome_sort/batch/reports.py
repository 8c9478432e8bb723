"""The reports of a batch run: every finished spread's objects in one table, the per-sample
summary, the comparisons between samples, their sentences and the stacked-bar plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from napari_chromosome_sort.analysis import plots, readout
from napari_chromosome_sort.batch.fingerprints import DONE
from napari_chromosome_sort.batch.jobs import SpreadJob
from napari_chromosome_sort.files.atomic import write_bytes_atomic, write_csv_atomic


def collect_objects(out_dir, jobs: list[SpreadJob] | None = None) -> pd.DataFrame:
    """Concatenate every finished spread's ``objects.csv`` (sorted by sample, spread); with
    ``jobs``, only those spreads (a removed input's old result is not counted)."""
    spreads = Path(out_dir) / "spreads"
    frames = []
    dones = sorted(spreads.glob(f"*/*/{DONE}"))
    if jobs is not None:
        dones = [Path(j.out_dir) / DONE for j in sorted(jobs, key=lambda j: j.out_dir)]
        dones = [d for d in dones if d.is_file()]
    for done in dones:
        path = done.parent / "objects.csv"
        try:
            frames.append(pd.read_csv(path, keep_default_na=True))
        except (pd.errors.EmptyDataError, FileNotFoundError):
            continue  # empty, or damaged and not recomputed (then listed in failures.csv)
    if not frames:
        return pd.DataFrame(columns=["sample", "spread", "label", "class"])
    table = pd.concat(frames, ignore_index=True)
    table["sample"] = table["sample"].astype(str)
    table["spread"] = table["spread"].astype(str)
    return table.sort_values(["sample", "spread", "label"], kind="stable").reset_index(drop=True)


def write_reports(
    out_dir, objects: pd.DataFrame, classes=None, formats=("png", "svg"), confusion=None
):
    """summary.csv, comparisons.csv, stats.txt and the stacked-bar plot from ``objects``;
    ``confusion`` (the model's cross-validated confusion, if it stores one) widens each share's
    interval by the classifier's own error."""
    # matplotlib (through plots) only once there is something to plot

    out_dir = Path(out_dir)
    files = []
    write_csv_atomic(objects, out_dir / "objects.csv")
    files.append(out_dir / "objects.csv")
    classified = objects[objects["class"].notna()] if "class" in objects else objects.iloc[:0]
    if classified.empty:
        return pd.DataFrame(), [], files
    if classes is None:
        classes = [c[2:] for c in objects.columns if c.startswith("p_")] or None
    summary = readout.summarize(classified, classes=classes, confusion=confusion)
    write_csv_atomic(summary, out_dir / "summary.csv")
    files.append(out_dir / "summary.csv")
    comparisons = readout.compare_all(classified, classes=classes, confusion=confusion)
    lines = readout.comparison_lines(classified, comparisons, classes=classes)
    if comparisons:
        write_csv_atomic(
            pd.DataFrame([c.as_dict() for c in comparisons]), out_dir / "comparisons.csv"
        )
        files.append(out_dir / "comparisons.csv")
    write_bytes_atomic(out_dir / "stats.txt", ("\n".join(lines) + "\n").encode())
    files.append(out_dir / "stats.txt")
    spreads = readout.spread_summary(classified, classes=classes, confusion=confusion)
    fig = plots.stacked_bar(summary, comparisons=comparisons, spreads=spreads)
    files += plots.save_figure(fig, out_dir / "stacked_bar", formats)
    return summary, comparisons, files
