"""Validate the whole-image sorter on real mitotic vs interphase tiles, split BY SPREAD/SLIDE.

    python scripts/make_mitotic_tiles.py --out out/mitotic_tiles
    python scripts/validate_sorter.py --tiles out/mitotic_tiles \
        --weights ../shared/weights/squeezenet1_1_imagenet_features.pth

Groups = DAPI slide folders and the 3 Giemsa spreads; each group is held out in one of K folds
(GroupKFold), a squeezenet1_1 sorter is trained on the tiles of the other groups only, and then
``sorter.sort_folder`` sorts the held-out tiles (copies into class folders). Reports pooled
accuracy, Cohen's kappa, per-modality accuracy and the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> int:
    from sklearn.model_selection import GroupKFold

    from napari_chromosome_sort.analysis import metrics, plots
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.sorter import (
        load_rgb,
        sort_folder,
        sorter_config,
        train_sorter_images,
    )

    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default=str(repo / "out" / "mitotic_tiles"))
    parser.add_argument(
        "--weights",
        default=str(repo.parent / "shared" / "weights" / "squeezenet1_1_imagenet_features.pth"),
    )
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument(
        "--group-by",
        default="slide",
        choices=["slide", "modality"],
        help="held-out unit: slides/spreads (default) or a whole staining (train DAPI, test "
        "Giemsa and vice versa; --folds is then 2)",
    )
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--out", default=str(repo / "out" / "validate_sorter"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    tiles = Path(args.tiles)
    manifest = pd.read_csv(tiles / "manifest.csv")
    classes = sorted(manifest["class"].unique())
    groups = np.where(manifest["modality"] == "giemsa", manifest["spread"], manifest["slide"])
    if args.group_by == "modality":
        groups = manifest["modality"].to_numpy()
        args.folds = 2
    y = manifest["class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    images = [load_rgb(tiles / f) for f in manifest["file"]]
    pred = np.empty(len(manifest), dtype=object)
    conf = np.zeros(len(manifest))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = sorter_config(backbone="squeezenet1_1", weights=args.weights, views=args.views)
    for k, (tr, te) in enumerate(GroupKFold(args.folds).split(images, y, groups)):
        model = run_to_end(train_sorter_images([images[i] for i in tr], y[tr], classes, config))
        # sort the held-out tiles exactly as a user would (copies into class folders)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in"
            src.mkdir()
            for i in te:
                shutil.copy2(tiles / manifest["file"].iloc[i], src / f"{i:05d}.png")
            result = run_to_end(sort_folder(model, src, Path(tmp) / "sorted"))
            table = result.table
            idx = [int(Path(f).stem) for f in table["file"]]
            pred[idx] = table["class"].to_numpy()
            conf[idx] = table["confidence"].to_numpy()
        acc = float((pred[te] == manifest["class"].to_numpy()[te]).mean())
        held = sorted(set(groups[te]))
        print(f"fold {k}: held out {len(held)} groups, {len(te)} tiles, accuracy {acc:.3f}")
    truth = manifest["class"].to_numpy()
    report = metrics.evaluate(list(truth), list(pred), classes)
    per_mod = {
        m: float((pred[manifest["modality"] == m] == truth[manifest["modality"] == m]).mean())
        for m in sorted(manifest["modality"].unique())
    }
    review = float((conf < 0.6).mean())
    acc_conf = float((pred[conf >= 0.6] == truth[conf >= 0.6]).mean())
    summary = {
        "n_tiles": int(len(manifest)),
        "n_groups": int(len(set(groups))),
        "folds": args.folds,
        "group_by": args.group_by,
        "accuracy": report["accuracy"],
        "kappa": report["kappa"],
        "per_modality_accuracy": per_mod,
        "review_fraction_at_0.6": review,
        "accuracy_above_0.6": acc_conf,
        "classes": classes,
        "confusion": report["confusion"]["counts"],
    }
    (out / f"sorter_validation_{args.group_by}.json").write_text(json.dumps(summary, indent=2))
    pd.DataFrame(
        {"file": manifest["file"], "truth": truth, "pred": pred, "confidence": conf}
    ).to_csv(out / "sorter_predictions.csv", index=False)
    plots.save_figure(
        plots.confusion_matrix_plot(
            report["confusion"]["counts"], classes, "Sorter: held-out slides"
        ),
        repo / "docs" / "images" / f"readout_sorter_confusion_{args.group_by}",
        ("png",),
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
