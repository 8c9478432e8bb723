"""Validate the classifier on the seed paper's WT crops (DONE criteria in docs/validation.md).

1. ``chromosort crossval WT --folds 5 --weights squeezenet1_1_imagenet_features.pth --json``
   (nested: every default knob chosen inside each training fold), concordance, kappa, predicted
   vs. true class distribution;
2. the seed paper's published model imported with ``import_state_dict`` (original plain
   preprocessing) on the same crops.

    .venv/bin/python scripts/validate_classifier.py [--repeats 1] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WT = SHARED / "data" / "ikemoto_crops_wt"
FEATURES = SHARED / "weights" / "squeezenet1_1_imagenet_features.pth"
PAPER = SHARED / "weights" / "ikemoto2022_squeezenet_1.pth"


def crossval(repeats: int, cache_dir: str | None) -> dict:
    from napari_chromosome_sort.cli import main

    argv = [
        "crossval",
        str(WT),
        "--folds",
        "5",
        "--repeats",
        str(repeats),
        "--weights",
        str(FEATURES),
        "--json",
    ]
    if cache_dir:
        argv += ["--cache-dir", cache_dir]
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    if rc != 0:
        raise SystemExit(f"crossval failed with exit code {rc}")
    report = json.loads(out.getvalue())
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def imported_model() -> dict:
    from napari_chromosome_sort.analysis.metrics import evaluate
    from napari_chromosome_sort.classification.model_io import import_state_dict
    from napari_chromosome_sort.classification.training import scan_folder

    model = import_state_dict(PAPER, ["a", "b", "c"], "squeezenet1_1")
    paths, y, classes = scan_folder(WT)
    pred = model.predict_proba(paths, tta=False).argmax(1)
    return evaluate(y, pred, classes)


def line(name: str, r: dict) -> str:
    d = r["distribution"]
    dist = ", ".join(f"{c} {d['true'][c]:.3f}->{d['pred'][c]:.3f}" for c in r["classes"])
    extra = f" (fold sd {r['accuracy_sd']:.3f})" if "accuracy_sd" in r else ""
    return f"| {name} | {r['n']} | {r['accuracy']:.3f}{extra} | {r['kappa']:.3f} | {dist} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache-dir", default=None, help="disk cache for backbone features")
    ap.add_argument("--skip-crossval", action="store_true")
    args = ap.parse_args()
    for path in (WT, FEATURES, PAPER):
        if not path.exists():
            raise SystemExit(f"missing {path} (see ../shared/data/README.md)")
    rows, results = [], {}
    if not args.skip_crossval:
        cv = crossval(args.repeats, args.cache_dir)
        results["crossval"] = cv
        rows.append(line(f"crossval 5-fold x{args.repeats} (ours, {cv['seconds']} s)", cv))
    imp = imported_model()
    results["imported"] = imp
    rows.append(line("published model imported (plain preprocessing)", imp))
    print(json.dumps(results, indent=1))
    print("| run | n | concordance | kappa | class fractions true->pred |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if "crossval" in results:
        cv = results["crossval"]
        c_gap = abs(cv["distribution"]["pred"]["c"] - cv["distribution"]["true"]["c"])
        print(
            f"\ncrossval concordance {cv['accuracy']:.3f} (target >= 0.78): "
            f"{'PASS' if cv['accuracy'] >= 0.78 else 'FAIL'}; type C fraction gap "
            f"{100 * c_gap:.1f} points (target <= 2): {'PASS' if c_gap <= 0.02 else 'FAIL'}"
        )
    print(
        f"imported model concordance {imp['accuracy']:.3f} (expected ~0.72): "
        f"{'PASS' if abs(imp['accuracy'] - 0.72) <= 0.03 else 'CHECK'}"
    )


if __name__ == "__main__":
    main()
