"""``python -m validation <data set>``: the figures of docs/validation.md, reproduced.

Each sub-command prints its tables (or JSON with ``--json``); the data root is
``$CHROMOSORT_DATA``, else ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import sys

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

    table = dapi_table(args.limit, jobs=args.jobs)
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


def _segment_learn(args) -> dict[str, pd.DataFrame]:
    from .learned import learned_report

    return learned_report(jobs=args.jobs)


def _robustness(args) -> dict[str, pd.DataFrame]:
    from .robustness import robustness_tables

    tables = robustness_tables(args.dapi_every, jobs=args.jobs)
    return {
        "Giemsa spreads degraded: boxes found": tables["giemsa"],
        f"DAPI spreads (every {args.dapi_every}th) degraded: truth chromosomes found": tables[
            "dapi"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m validation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    g = sub.add_parser("giemsa", help="Giemsa DDX11-/- spreads: boxes found, per spread, vs naive")
    g.add_argument("--loso", action="store_true", help="also choose the constants leave-one-out")
    g.set_defaults(run=_giemsa)
    d = sub.add_parser("dapi", help="ADIR DAPI spreads: truth chromosomes found, per slide group")
    d.add_argument("--limit", type=int, default=None, help="only the first N spreads")
    d.set_defaults(run=_dapi)
    c = sub.add_parser("calls", help="Giemsa spreads end to end with a WT-crop model; priors")
    c.add_argument("--weights", default=None, help="backbone weights (default: shared file)")
    c.add_argument("--cache", default=None, help="feature cache folder (faster re-runs)")
    c.add_argument("--model", default=None, help="WT model file: loaded if present, else saved")
    c.set_defaults(run=_calls)
    sl = sub.add_parser(
        "segment-learn", help="Giemsa: a segmentation model learned from 1-2 spreads, on the others"
    )
    sl.set_defaults(run=_segment_learn)
    r = sub.add_parser("robustness", help="both stains degraded (resolution, noise, JPEG, light)")
    r.add_argument("--dapi-every", type=int, default=6, help="every Nth DAPI spread")
    r.set_defaults(run=_robustness)
    args = parser.parse_args(argv)
    _print(args.run(args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
