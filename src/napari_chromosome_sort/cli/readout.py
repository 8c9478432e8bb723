"""``chromosort readout``: per-sample type distributions, CIs, tests and plots."""

from __future__ import annotations

import argparse

from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic, write_csv_atomic
from napari_chromosome_sort.files.safety import load_json, output_path, record_written, safe_id

HELP = (
    "per-sample type shares with intervals, the comparison of samples with spreads as the "
    "replicates, shares corrected for the classifier's error, plots"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort readout``."""
    parser.add_argument(
        "source",
        help="calls table (CSV, e.g. a batch run's objects.csv), a batch output folder, or a "
        "folder-per-class tree (<sample>/<class>/<image> or <class>/<image>)",
    )
    parser.add_argument("--out", required=True, help="output folder for CSVs and plots")
    add_overwrite_argument(parser, "files in --out")
    parser.add_argument("--sample-col", default="sample")
    parser.add_argument("--class-col", default="class")
    parser.add_argument("--spread-col", default="spread")
    parser.add_argument("--classes", default=None, help="comma-separated class order")
    parser.add_argument(
        "--reference",
        default=None,
        help="sample every other one is compared with (default: the first); 'all' = all pairs",
    )
    parser.add_argument(
        "--test",
        default="auto",
        choices=["auto", "chi2", "permutation"],
        help="the secondary per-chromosome test (the headline test is always the permutation "
        "test over spreads)",
    )
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="JSON",
        help="also plot a model report: JSON from 'chromosort evaluate --json' / crossval "
        "(confusion matrix) or a learning curve (list of {n_train, accuracy, ...}); repeatable",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="the model that made the calls: its stored cross-validated confusion corrects the "
        "shares for the classifier's error (and is plotted with its learning curve)",
    )
    parser.add_argument(
        "--confusion",
        default=None,
        metavar="JSON",
        help="a cross-validated confusion of the model ('chromosort crossval --json' output) to "
        "correct the shares with; overrides the one stored in --model",
    )
    parser.add_argument(
        "--agreement",
        default=None,
        metavar="CSV",
        help="also compute annotator agreement from a CSV with one column per annotator "
        "(plus an optional 'file' column)",
    )


def _load_calls(args):
    from pathlib import Path

    import pandas as pd

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.analysis.readout import calls_from_folder

    source = Path(args.source)
    if source.is_dir() and (source / "objects.csv").is_file():
        source = source / "objects.csv"
    if source.is_file():
        try:
            table = pd.read_csv(source)
        except Exception as error:  # noqa: BLE001
            raise ChromosortError(f"cannot read table {source}: {error}") from None
    elif source.is_dir():
        table = calls_from_folder(source)
    else:
        raise ChromosortError(f"{source} does not exist")
    for column, option in ((args.sample_col, "--sample-col"), (args.class_col, "--class-col")):
        if column not in table.columns:
            shown = ", ".join(map(str, table.columns[:12])) or "none"
            raise ChromosortError(
                f"calls table {source} has no column {column!r} (its columns: {shown}); "
                f"name the right one with {option}"
            )
    if table[args.class_col].dropna().empty:
        raise ChromosortError(f"calls table {source} has no calls (no row with a class)")
    return table


def _model_reports(args):
    from pathlib import Path

    reports = []
    for path in args.metrics:
        try:
            text = Path(path).read_text()
        except (OSError, ValueError) as error:
            raise ChromosortError(f"cannot read metrics JSON {path}: {error}") from None
        reports.append((safe_id(Path(path).stem), load_json(text, f"metrics JSON {path}")))
    if args.model:
        from napari_chromosome_sort.classification.models.model_io import read_metadata

        meta = read_metadata(args.model)
        reports.append(("model", {"classes": meta.get("classes"), **(meta.get("metrics") or {})}))
    return reports


def plot_model_report(report, out, name: str = "model") -> list:
    """Confusion matrix (+ CSV) and/or learning curve (+ CSV) from a metrics report."""
    import pandas as pd

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.analysis import plots

    files = []
    curve = report if isinstance(report, list) else report.get("learning_curve")
    if isinstance(report, dict) and report.get("confusion") and report.get("classes"):
        confusion = report["confusion"]
        counts = confusion["counts"] if isinstance(confusion, dict) else confusion
        classes = list(report["classes"])
        matrix = pd.DataFrame(counts, index=classes, columns=classes)
        write_csv_atomic(matrix.rename_axis("true").reset_index(), out / f"{name}_confusion.csv")
        title = f"Confusion ({name})"
        if "accuracy" in report:
            title += f": concordance {report['accuracy']:.3f}"
            if "kappa" in report:
                title += f", κ {report['kappa']:.2f}"
        fig = plots.confusion_matrix_plot(counts, classes, title)
        files += [out / f"{name}_confusion.csv", *plots.save_figure(fig, out / f"{name}_confusion")]
    if curve:
        table = pd.DataFrame(curve)
        write_csv_atomic(table, out / f"{name}_learning_curve.csv")
        fig = plots.learning_curve_plot(table, f"Learning curve ({name})")
        files += [
            out / f"{name}_learning_curve.csv",
            *plots.save_figure(fig, out / f"{name}_learning_curve"),
        ]
    return files


def _confusion(args):
    """The confusion that corrects the shares: --confusion, else the one --model stores."""
    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.analysis.confusion import load_confusion

    for source in (args.confusion, args.model):
        if source:
            found = load_confusion(source)
            if found is not None:
                return found
    return None


def _check_outputs(out, report_names, agreement: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, an output that is a link or a file chromosort did
    not write (unless ``overwrite``)."""
    names = ["summary.csv", "spreads.csv", "comparisons.csv", "stats.txt"]
    names += ["stacked_bar.png", "stacked_bar.svg"]
    if agreement:
        names += ["concordance.csv", "kappa.csv", "agreement.png", "agreement.svg"]
    for name in report_names:
        for part in ("confusion", "learning_curve"):
            names += [f"{name}_{part}.{suffix}" for suffix in ("csv", "png", "svg")]
    for name in names:
        output_path(out / name, out, overwrite, "output")


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort readout``; returns the exit status."""
    from pathlib import Path

    import pandas as pd

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.analysis import plots, readout

    out = Path(args.out)
    table = _load_calls(args)
    reports = _model_reports(args)
    confusion = _confusion(args)  # every input read and checked before anything is written
    _check_outputs(out, [name for name, _ in reports], bool(args.agreement), args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    classes = args.classes.split(",") if args.classes else None
    columns = (args.sample_col, args.class_col)
    summary = readout.summarize(
        table, *columns, args.spread_col, classes, alpha=args.alpha, confusion=confusion
    )
    written.append(write_csv_atomic(summary, out / "summary.csv"))
    per_spread = readout.spread_summary(
        table, *columns, args.spread_col, classes, alpha=args.alpha, confusion=confusion
    )
    if not per_spread.empty:
        written.append(write_csv_atomic(per_spread, out / "spreads.csv"))
    counts = readout.count_table(table, *columns, classes)
    comparisons = readout.compare_all(
        table,
        *columns,
        classes,
        reference=args.reference,
        spread_col=args.spread_col,
        confusion=confusion,
        method=args.test,
        alpha=args.alpha,
    )
    if comparisons:
        table_out = pd.DataFrame([c.as_dict() for c in comparisons])
        written.append(write_csv_atomic(table_out, out / "comparisons.csv"))
    lines = readout.sample_lines(summary) + readout.comparison_lines(table, comparisons)
    written.append(write_bytes_atomic(out / "stats.txt", ("\n".join(lines) + "\n").encode()))
    figure = plots.stacked_bar(summary, comparisons=comparisons, spreads=per_spread)
    written += plots.save_figure(figure, out / "stacked_bar")
    print(counts.to_string())
    for line in lines:
        print(line)
    if args.agreement:
        labels = pd.read_csv(args.agreement)
        if "file" in labels.columns:
            labels = labels.set_index("file")
        conc, kappa = readout.agreement(labels)
        written.append(write_csv_atomic(conc.reset_index(), out / "concordance.csv"))
        written.append(write_csv_atomic(kappa.reset_index(), out / "kappa.csv"))
        written += plots.save_figure(plots.agreement_plot(kappa, conc), out / "agreement")
        print("Cohen's kappa:\n" + kappa.round(3).to_string())
    for name, report in reports:
        try:
            files = plot_model_report(report, out, name)
        except (ValueError, TypeError, KeyError, IndexError) as error:  # crafted or damaged
            raise ChromosortError(
                f"metrics of {name} are malformed: {type(error).__name__}: {error}"
            ) from None
        written += files
        for path in files:
            print(f"wrote {path}")
    record_written(written)
    print(f"written to {out}")
    return 0
