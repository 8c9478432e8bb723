"""``chromosort readout``: per-sample type distributions, CIs, tests and plots."""

from __future__ import annotations

import argparse

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

    from ..analysis.readout import calls_from_folder
    from ..errors import ChromosortError

    source = Path(args.source)
    if source.is_dir() and (source / "objects.csv").is_file():
        source = source / "objects.csv"
    if source.is_file():
        try:
            return pd.read_csv(source)
        except Exception as error:  # noqa: BLE001
            raise ChromosortError(f"cannot read table {source}: {error}") from error
    if source.is_dir():
        return calls_from_folder(source)
    raise ChromosortError(f"{source} does not exist")


def _model_reports(args):
    import json
    from pathlib import Path

    from ..errors import ChromosortError

    reports = []
    for path in args.metrics:
        try:
            reports.append((Path(path).stem, json.loads(Path(path).read_text())))
        except (OSError, ValueError) as error:
            raise ChromosortError(f"cannot read metrics JSON {path}: {error}") from None
    if args.model:
        from ..classification.model_io import read_metadata

        meta = read_metadata(args.model)
        reports.append(("model", {"classes": meta.get("classes"), **(meta.get("metrics") or {})}))
    return reports


def plot_model_report(report, out, name: str = "model") -> list:
    """Confusion matrix (+ CSV) and/or learning curve (+ CSV) from a metrics report."""
    import pandas as pd

    from ..analysis import plots

    files = []
    curve = report if isinstance(report, list) else report.get("learning_curve")
    if isinstance(report, dict) and report.get("confusion") and report.get("classes"):
        confusion = report["confusion"]
        counts = confusion["counts"] if isinstance(confusion, dict) else confusion
        classes = list(report["classes"])
        pd.DataFrame(counts, index=classes, columns=classes).to_csv(out / f"{name}_confusion.csv")
        title = f"Confusion ({name})"
        if "accuracy" in report:
            title += f": concordance {report['accuracy']:.3f}"
            if "kappa" in report:
                title += f", κ {report['kappa']:.2f}"
        fig = plots.confusion_matrix_plot(counts, classes, title)
        files += [out / f"{name}_confusion.csv", *plots.save_figure(fig, out / f"{name}_confusion")]
    if curve:
        table = pd.DataFrame(curve)
        table.to_csv(out / f"{name}_learning_curve.csv", index=False)
        fig = plots.learning_curve_plot(table, f"Learning curve ({name})")
        files += [
            out / f"{name}_learning_curve.csv",
            *plots.save_figure(fig, out / f"{name}_learning_curve"),
        ]
    return files


def _confusion(args):
    """The confusion that corrects the shares: --confusion, else the one --model stores."""
    from ..analysis.confusion import load_confusion

    for source in (args.confusion, args.model):
        if source:
            found = load_confusion(source)
            if found is not None:
                return found
    return None


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort readout``; returns the exit status."""
    from pathlib import Path

    import pandas as pd

    from ..analysis import plots, readout
    from ..atomic import write_bytes_atomic, write_csv_atomic
    from ..errors import ChromosortError

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = _load_calls(args)
    classes = args.classes.split(",") if args.classes else None
    confusion = _confusion(args)
    columns = (args.sample_col, args.class_col)
    summary = readout.summarize(
        table, *columns, args.spread_col, classes, alpha=args.alpha, confusion=confusion
    )
    write_csv_atomic(summary, out / "summary.csv")
    per_spread = readout.spread_summary(
        table, *columns, args.spread_col, classes, alpha=args.alpha, confusion=confusion
    )
    if not per_spread.empty:
        write_csv_atomic(per_spread, out / "spreads.csv")
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
        write_csv_atomic(pd.DataFrame([c.as_dict() for c in comparisons]), out / "comparisons.csv")
    lines = readout.sample_lines(summary) + readout.comparison_lines(table, comparisons)
    write_bytes_atomic(out / "stats.txt", ("\n".join(lines) + "\n").encode())
    figure = plots.stacked_bar(summary, comparisons=comparisons, spreads=per_spread)
    plots.save_figure(figure, out / "stacked_bar")
    print(counts.to_string())
    for line in lines:
        print(line)
    if args.agreement:
        labels = pd.read_csv(args.agreement)
        if "file" in labels.columns:
            labels = labels.set_index("file")
        conc, kappa = readout.agreement(labels)
        conc.to_csv(out / "concordance.csv")
        kappa.to_csv(out / "kappa.csv")
        plots.save_figure(plots.agreement_plot(kappa, conc), out / "agreement")
        print("Cohen's kappa:\n" + kappa.round(3).to_string())
    for name, report in _model_reports(args):
        try:
            files = plot_model_report(report, out, name)
        except (ValueError, TypeError, KeyError, IndexError) as error:  # crafted or damaged
            raise ChromosortError(
                f"metrics of {name} are malformed: {type(error).__name__}: {error}"
            ) from None
        for path in files:
            print(f"wrote {path}")
    print(f"written to {out}")
    return 0
