"""``chromosort batch``: segment -> classify -> Grad-CAM every spread below a folder."""

from __future__ import annotations

import argparse
import sys

from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.cli.predict import add_views_argument
from napari_chromosome_sort.cli.segment import add_crossing_score_argument
from napari_chromosome_sort.progress import run_to_end, with_tqdm

HELP = (
    "segment, classify and explain every spread below INPUT_DIR (sub-folders = samples); resumable"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort batch``."""
    parser.add_argument("input_dir", help="folder of spreads; each sub-folder is one sample")
    parser.add_argument(
        "--model",
        default=None,
        help="model file from 'chromosort train' (default: the bundled wild-type model, A/B/C)",
    )
    parser.add_argument("--out", required=True, help="output folder (re-run to resume)")
    parser.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (tcp://host:port); 'serial' runs in this "
        "process; default: a local Dask cluster using --workers processes (this process when "
        "Dask, the 'batch' extra, is not installed)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: all cores)"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads per task (default 1)"
    )
    parser.add_argument("--no-gradcam", action="store_true", help="skip Grad-CAM maps")
    add_views_argument(parser)
    add_crossing_score_argument(parser)
    parser.add_argument(
        "--adapt-priors",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="estimate each spread's class priors without labels instead of assuming the "
        "training priors (default: as the model records; see chromosort predict)",
    )
    parser.add_argument(
        "--prior-pseudo-counts",
        type=float,
        default=None,
        metavar="A",
        help="Dirichlet pseudo-counts of each spread's estimated class priors (MAP-EM; default: "
        "as the model records, else 1.0; 0 = maximum-likelihood EM)",
    )
    parser.add_argument(
        "--prior-method",
        choices=("em", "bbse"),
        default="em",
        help="label-free prior estimate per spread: em (default) | bbse (see chromosort predict)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip image files matching GLOB (repeatable), e.g. --exclude '*K.tif'",
    )
    parser.add_argument(
        "--format",
        action="append",
        default=None,
        dest="formats",
        choices=["png", "svg", "pdf"],
        help="plot formats (default png and svg)",
    )
    add_overwrite_argument(parser, "report files in --out")


def _log_line(report) -> None:
    """One line per finished spread, for logs (stderr that is not a terminal)."""
    failed = (report.metrics or {}).get("failed")
    tail = f" ({int(failed)} failed so far)" if failed else ""
    print(f"[{report.step}/{report.total}] {report.message}{tail}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort batch``; returns the exit status (1 if any spread failed)."""

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.batch import run_batch
    from napari_chromosome_sort.classification.predict import PriorOptions
    from napari_chromosome_sort.segmentation import SegmentationParams

    if args.model is None:
        from napari_chromosome_sort._sample_data import bundled_model_path

        args.model = str(bundled_model_path())
    steps = run_batch(
        args.input_dir,
        args.model,
        args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        gradcam=not args.no_gradcam,
        torch_threads=args.torch_threads,
        exclude=tuple(args.exclude),
        formats=tuple(args.formats or ("png", "svg")),
        params=SegmentationParams(
            crossing_score=args.crossing_score,
            pixel_classes=args.pixel_classes,
            junction_score=args.junction_score,
        ),
        priors=PriorOptions(
            adapt=args.adapt_priors,
            pseudo_counts=args.prior_pseudo_counts,
            method=args.prior_method,
        ),
        views=args.views,
        overwrite=args.overwrite,
    )
    if sys.stderr.isatty():  # a bar on a terminal
        result = with_tqdm(steps, desc="spreads", leave=True)
    else:  # a line per spread in a log
        result = run_to_end(steps, _log_line)
    for image, spread in result.renamed.items():
        print(
            f"note: {image} is reported as spread {spread} (names must be distinct)",
            file=sys.stderr,
        )
    n_cls = int(result.objects["class"].notna().sum()) if "class" in result.objects else 0
    print(
        f"{result.n_spreads} spread(s) ({result.n_skipped} already done, "
        f"{result.n_failed} failed); "
        f"{len(result.objects)} objects, {n_cls} classified -> {result.out_dir}"
    )
    for line in result.warning_lines():
        print(f"warning: {line}", file=sys.stderr)
    for comparison in result.comparisons:
        print(comparison.sentence)
    for image, error in result.failures.items():
        print(f"failed: {image}: {error}", file=sys.stderr)
    return 1 if result.n_failed else 0
