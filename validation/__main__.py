"""``python -m validation <command>``: the figures of docs/validation.md, reproduced.

Each sub-command prints its tables (or JSON with ``--json``); the data root is
``$CHROMOSORT_DATA``, else ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def _print(tables: dict[str, pd.DataFrame], as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: t.to_dict(orient="records") for k, t in tables.items()}, default=str))
        return
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.max_columns", 50)
    for title, table in tables.items():
        print(f"## {title}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print()


def _giemsa(args) -> dict[str, pd.DataFrame]:
    from .segmentation import giemsa_table, leave_one_spread_out, summary_row

    table = giemsa_table()
    tables = {
        "Giemsa spreads, shipped defaults (box IoU >= 0.5)": table,
        "Giemsa pooled": pd.DataFrame([summary_row(table)]),
    }
    if args.loso:
        held_out, grid = leave_one_spread_out(jobs=args.jobs)
        held = held_out.rename(columns={"held_out": "spread", "held_out_recall": "recall"})
        held["boxes"] = table["boxes"].to_numpy()
        held["found"] = (held["recall"] * held["boxes"]).round().astype(int)
        held["naive_recall"] = table["naive_recall"].to_numpy()
        tables["Giemsa leave-one-spread-out: constants chosen on the other four"] = held_out
        tables["Giemsa leave-one-spread-out pooled"] = pd.DataFrame([summary_row(held)])
        tables["Giemsa grid (every constant setting, every spread)"] = grid
    return tables


def _dapi(args) -> dict[str, pd.DataFrame]:
    from .segmentation import dapi_groups, dapi_table

    if args.pixels:
        from .dapi_pixels import pixel_report

        return pixel_report(args.cache, jobs=args.jobs, limit=args.limit)
    if args.heldout:
        from .dapi_heldout import heldout_report

        tables = heldout_report(args.cache, jobs=args.jobs, limit=args.limit)
        return {
            "DAPI in-sample, slide-out and slide-group-out (mask IoU >= 0.5)": tables["summary"],
            "DAPI settings chosen on the other slides": tables["chosen"],
        }
    if args.flatten:
        from .dapi_flatten import flatten_report

        tables = flatten_report(args.folder, jobs=args.jobs)
        return {
            "DAPI, stain flattening off, at three scales, chosen slide-out": tables["summary"],
            "Flattening chosen on the other slides, per held-out slide": tables["chosen"],
        }
    if args.junctions:
        from .dapi_junctions import junction_report

        cache = args.cache if args.cache != Path("out/dapi_cache") else Path("out/junction_cache")
        tables = junction_report(args.folder, cache, jobs=args.jobs)
        return {
            f"DAPI, learned junction cuts ({'shipped model' if args.folder else 'slide-out'})": (
                tables["figures"]
            ),
            **{f"Junction {k}": v for k, v in tables.items() if k != "figures"},
        }
    table = dapi_table(args.limit, jobs=args.jobs, folder=args.folder)
    return {"DAPI spreads (mask IoU >= 0.5)": table, "DAPI per slide group": dapi_groups(table)}


def _calls(args) -> dict[str, pd.DataFrame]:
    from .calls import calls_report
    from .data import squeezenet_weights

    weights = args.weights or (squeezenet_weights() if squeezenet_weights().exists() else None)
    tables = calls_report(args.model, weights, args.cache)
    return {
        "Whole spreads, WT-crop model, per prior handling and spread": tables["per_spread"],
        "Whole spreads pooled": tables["pooled"],
        "Prior handling chosen leave-one-spread-out": tables["loso"],
    }


def _own_labels(args) -> dict[str, pd.DataFrame]:
    from .own_labels import own_labels_report

    tables = own_labels_report(args.cache, not args.no_curve, args.seeds, args.recipes)
    out = {
        "Own labels, leave-one-spread-out: each held-out spread": tables["per_spread"],
        "Own labels pooled, worst spread beside": tables["pooled"],
    }
    if "curve" in tables:
        out["Learning curve: own crops of the other spreads added to the WT crops"] = tables[
            "curve"
        ]
    return out


def _own_handling(args) -> dict[str, pd.DataFrame]:
    from .own_handling import handling_report

    tables = handling_report(args.cache, not args.design_by_cv, args.explore)
    return {
        "Own labels, calls handled as chosen on the other spreads: each held-out spread": tables[
            "per_spread"
        ],
        "Own labels, calls handled, pooled, worst spread beside": tables["pooled"],
    }


def _fine_tune(args) -> dict[str, pd.DataFrame]:
    from .fine_tune import fine_tune_report

    return fine_tune_report(args.cache, args.blocks, args.epochs, args.lr, args.wt_cv)


def _correction_loop(args) -> dict[str, pd.DataFrame]:
    from .correction_loop import correction_loop_report

    tables = correction_loop_report(
        args.seeds,
        tuple(args.k),
        args.drop_prior_shift,
        args.unmatched,
        args.spread_mix,
        tuple(args.spreads or ()),
        args.walk,
    )
    out = {
        "Correction loop, per spread (random: mean over the draws)": tables["per_spread"],
        "Correction loop pooled, worst spread beside": tables["pooled"],
    }
    if args.runs:
        out["Correction loop, every run"] = tables["runs"]
    return out


def _segment_learn(args) -> dict[str, pd.DataFrame]:
    from .learned import dapi_report, learned_report

    if args.dapi:
        return dapi_report(jobs=args.jobs, splits=not args.no_splits)
    return learned_report(jobs=args.jobs, splits=not args.no_splits, two=not args.one_only)


def _robustness(args) -> dict[str, pd.DataFrame]:
    from .robustness import robustness_tables

    tables = robustness_tables(args.dapi_every, jobs=args.jobs)
    return {
        "Giemsa spreads degraded: boxes found": tables["giemsa"],
        f"DAPI spreads (every {args.dapi_every}th) degraded: truth chromosomes found": tables[
            "dapi"
        ],
    }


def _crossing_model(args) -> dict[str, pd.DataFrame]:
    from .crossing import crossing_report

    tables = crossing_report(args.out, args.cache, args.jobs, args.budget, args.min_rel_area)
    return {
        "DAPI crossing score, probe set held out (C and threshold chosen on the others)": tables[
            "held_out"
        ],
        "DAPI crossing score, slide held out (per probe set; worst slide)": tables["slide_out"],
        "DAPI crossing score retrained on all spreads, beside the shipped model": tables[
            "retrained"
        ],
    }


def _crops(args) -> dict[str, pd.DataFrame]:
    from .crops import crops_report

    tables = crops_report(args.repeats, args.cache, args.skip_crossval)
    return {"WT crops: concordance with the researcher, kappa, class fractions": tables["runs"]}


def _readout(args) -> dict[str, pd.DataFrame]:
    from .readout import (
        corrected_coverage,
        corrected_on_ddx11,
        learning_curve,
        readout_report,
        truth_vs_model,
    )

    tables = readout_report(
        draws=args.draws, spread_size=args.spread_size, seed=args.seed, figures=args.figures
    )
    out = {
        "Spreads as replicates: share of draws flagged at alpha 0.05": tables["spreads"],
        "Spread-to-spread overdispersion of the annotated DDX11 spreads": tables["phi_ddx11"],
        "Two samples of two discordant spreads (WT 10/50 % C, mutant 30/70 % C)": tables[
            "discordant"
        ],
        "Example (figure readout_stacked_bar)": tables["example_summary"],
        "Example comparison": tables["example"],
    }
    if args.coverage:
        out["Corrected shares: intervals holding the truth"] = corrected_coverage(
            args.coverage, args.spread_size, seed=args.seed + 1
        )
    if args.learning_curve:
        out["Learning curve, 5-fold CV concordance vs crops per class"] = learning_curve(
            args.figures
        )
    if args.batch_objects:
        out["Giemsa spreads: truth vs a batch run's calls"] = truth_vs_model(
            args.batch_objects, args.figures
        )
        out["Giemsa spreads: shares corrected with the model's confusion"] = corrected_on_ddx11(
            args.batch_objects
        )
    return out


def _sorter(args) -> dict[str, pd.DataFrame]:
    from .sorter import sorter_report

    tables = sorter_report(args.tiles, args.folds, args.group_by, args.views, args.figures)
    return {
        f"Sorter, mitotic vs interphase tiles, {args.group_by} held out": tables["summary"],
        "Sorter folds": tables["folds"],
        "Sorter confusion (rows true, columns sorted as)": tables["confusion"],
    }


def _gradcam(args) -> dict[str, pd.DataFrame]:
    from .gradcam import gradcam_mass

    return {
        "Grad-CAM: share of each crop's map on its chromosome (medians over the crops)": (
            gradcam_mass(args.model, args.spread, tuple(args.modes))
        )
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m validation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    g = sub.add_parser("giemsa", help="Giemsa DDX11-/- spreads: boxes found, per spread, vs naive")
    g.add_argument("--loso", action="store_true", help="also choose the constants leave-one-out")
    g.set_defaults(run=_giemsa)
    d = sub.add_parser("dapi", help="ADIR DAPI spreads: truth chromosomes found, per slide group")
    d.add_argument("--limit", type=int, default=None, help="only the first N spreads")
    d.add_argument(
        "--heldout",
        action="store_true",
        help="every constant chosen on other slides: slide-out and slide-group-out",
    )
    d.add_argument(
        "--pixels",
        action="store_true",
        help="the learned pixel classes, trained on some slides, judged on the others",
    )
    d.add_argument(
        "--flatten",
        action="store_true",
        help="the flattening of uneven stain off and on, and chosen on the other slides",
    )
    d.add_argument(
        "--junctions",
        action="store_true",
        help="the learned cuts of touching chromosomes, trained on other slides (--folder: the "
        "shipped model on those spreads)",
    )
    d.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="spreads to judge: <slide>/<image>D.tif + K.tif (default: the shared ADIR spreads)",
    )
    d.add_argument(
        "--cache",
        type=Path,
        default=Path("out/dapi_cache"),
        help="--heldout / --pixels: per-spread segmentations (and pixel samples, forests and "
        "probabilities) are kept here (re-runs take minutes)",
    )
    d.set_defaults(run=_dapi)
    c = sub.add_parser("calls", help="Giemsa spreads end to end with a WT-crop model; priors")
    c.add_argument("--weights", default=None, help="backbone weights (default: shared file)")
    c.add_argument("--cache", default=None, help="feature cache folder (faster re-runs)")
    c.add_argument("--model", default=None, help="WT model file: loaded if present, else saved")
    c.set_defaults(run=_calls)
    ol = sub.add_parser(
        "own-labels",
        help="Giemsa: WT + the other spreads' labelled crops, each spread held out, end to end",
    )
    ol.add_argument("--cache", default=None, help="feature cache folder (faster re-runs)")
    ol.add_argument("--no-curve", action="store_true", help="skip the learning curve")
    ol.add_argument("--seeds", type=int, default=3, help="random draws per curve point")
    ol.add_argument(
        "--recipes",
        nargs="+",
        default=["aligned", "by-spread", "aligned-prior", "defaults", "wt", "own"],
        choices=["aligned", "by-spread", "aligned-prior", "defaults", "wt", "own"],
        help="training recipes to compare (default: all)",
    )
    ol.set_defaults(run=_own_labels)
    oh = sub.add_parser(
        "own-labels-handling",
        help="Giemsa: own-labels model + per-spread prior adaptation / WT ensemble, chosen "
        "leave-one-spread-out inside each training set",
    )
    oh.add_argument("--cache", default=None, help="feature cache folder (faster re-runs)")
    oh.add_argument(
        "--design-by-cv",
        action="store_true",
        help="each head's design by the inner CV of chromosort train (default: the WT "
        "model's design, all layers, 256 components, L2 1)",
    )
    oh.add_argument(
        "--explore",
        action="store_true",
        help="also every handling fixed for all spreads (chosen on them: not an estimate)",
    )
    oh.set_defaults(run=_own_handling)
    ft = sub.add_parser(
        "fine-tune",
        help="Giemsa: the last backbone blocks tuned on WT + own crops, leave-one-spread-out",
    )
    ft.add_argument("--cache", default=None, help="cache folder of the frozen part (re-runs)")
    ft.add_argument("--blocks", type=int, default=1, help="last blocks tuned (1 or 2)")
    ft.add_argument("--epochs", type=int, default=5, help="passes over the training crops")
    ft.add_argument("--lr", type=float, default=1e-3, help="Adam step size")
    ft.add_argument("--wt-cv", action="store_true", help="also WT 5-fold cross-validation")
    ft.set_defaults(run=_fine_tune)
    cl = sub.add_parser(
        "correction-loop",
        help="Giemsa: correct the k least-sure (or random) calls of each spread, retrain, re-call",
    )
    cl.add_argument("--seeds", type=int, default=5, help="random draws per k (the baseline)")
    cl.add_argument("--k", type=int, nargs="+", default=[5, 10, 20], help="corrections per spread")
    cl.add_argument("--runs", action="store_true", help="also print every run")
    cl.add_argument(
        "--drop-prior-shift",
        action="store_true",
        help="diagnostic: retrain without the WT prior correction of the bundled model",
    )
    cl.add_argument(
        "--unmatched",
        choices=["reject", "pass"],
        default="reject",
        help="an object matching no annotated box met in the walk: marked not a chromosome "
        "(reject, one of the k) or passed over (pass)",
    )
    cl.add_argument(
        "--spread-mix",
        action="store_true",
        help="retrain with the spread's class mix re-estimated from all its objects, the "
        "corrected ones known (semi-supervised EM)",
    )
    cl.add_argument(
        "--walk",
        choices=["least-sure", "by-class", "margin"],
        default="least-sure",
        help="the walk's order: least sure first; the called classes in turn, least sure first "
        "in each; or the smallest margin between the two most probable classes first",
    )
    cl.add_argument("--spreads", nargs="+", help="only these spreads (file names, e.g. 2.png)")
    cl.set_defaults(run=_correction_loop)
    sl = sub.add_parser(
        "segment-learn", help="Giemsa: a segmentation model learned from 1-2 spreads, on the others"
    )
    sl.add_argument(
        "--dapi", action="store_true", help="DAPI instead: learned from 3 slides, on the others"
    )
    sl.add_argument("--no-splits", action="store_true", help="models that never split objects")
    sl.add_argument("--one-only", action="store_true", help="Giemsa: only the one-spread pairs")
    sl.set_defaults(run=_segment_learn)
    r = sub.add_parser("robustness", help="both stains degraded (resolution, noise, JPEG, light)")
    r.add_argument("--dapi-every", type=int, default=6, help="every Nth DAPI spread")
    r.set_defaults(run=_robustness)
    x = sub.add_parser(
        "crossing-model",
        help="DAPI: retrain the shipped crossing score; its probe-set-held-out estimate",
    )
    x.add_argument("--out", type=Path, default=None, help="write the retrained model here")
    x.add_argument("--cache", type=Path, default=None, help="per-spread cache folder")
    x.add_argument("--budget", type=float, default=0.03, help="share of singles to lose")
    x.add_argument(
        "--min-rel-area", type=float, default=1.8, help="flag objects >= this x the median"
    )
    x.set_defaults(run=_crossing_model)
    k = sub.add_parser("crops", help="WT crops: nested cross-validation, published model imported")
    k.add_argument("--repeats", type=int, default=1, help="repeats of the 5 folds")
    k.add_argument("--cache", default=None, help="feature cache folder (faster re-runs)")
    k.add_argument("--skip-crossval", action="store_true", help="only the published model")
    k.set_defaults(run=_crops)
    o = sub.add_parser(
        "readout", help="per-sample comparison over spreads: false alarms and planted shifts"
    )
    o.add_argument("--draws", type=int, default=400, help="pairs of samples per table cell")
    o.add_argument("--spread-size", type=int, default=40, help="chromosomes per spread")
    o.add_argument(
        "--coverage",
        type=int,
        default=0,
        metavar="DRAWS",
        help="also the coverage of the corrected shares' intervals (planted confusion)",
    )
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--figures", type=Path, default=None, help="write the figures here")
    o.add_argument(
        "--learning-curve", action="store_true", help="also a learning curve on the WT crops"
    )
    o.add_argument(
        "--batch-objects",
        type=Path,
        default=None,
        help="objects.csv of a `chromosort batch` run with the Giemsa spreads as sample "
        "giemsa_ddx11: its calls against the box classes",
    )
    o.set_defaults(run=_readout)
    so = sub.add_parser("sorter", help="whole-image sorter: mitotic vs interphase tiles held out")
    so.add_argument("--tiles", type=Path, default=None, help="tile folder (made if empty)")
    so.add_argument("--folds", type=int, default=4)
    so.add_argument(
        "--group-by",
        default="slide",
        choices=["slide", "modality"],
        help="held-out unit: slides/spreads, or a whole stain (2 folds)",
    )
    so.add_argument("--views", type=int, default=2)
    so.add_argument("--figures", type=Path, default=None, help="write the confusion figure here")
    so.set_defaults(run=_sorter)
    gc = sub.add_parser("gradcam", help="Grad-CAM focus: map mass on the chromosome, one spread")
    gc.add_argument("model", type=Path, help="classifier model file")
    gc.add_argument("--spread", default="3.png", help="Giemsa spread (file name)")
    gc.add_argument(
        "--modes",
        nargs="+",
        default=["head", "last"],
        help="LAYERS[:REFERENCE] of gradcam(); default: the default map and the classic one",
    )
    gc.set_defaults(run=_gradcam)
    args = parser.parse_args(argv)
    _print(args.run(args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
