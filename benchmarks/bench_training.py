"""Cached-feature head training vs. the naive way (frozen backbone re-run every epoch).

Both train the SAME head (standardisation + linear, Adam, same seed, same minibatches, same
dihedral view of each crop per epoch) for the same epochs; (a) computes the frozen features of
every crop once (all views used) and trains on the cache, (b) runs the frozen backbone over
every crop in every epoch. Prints wall times, their ratio, both held-out accuracies, and the
prediction speed (crops / second, with and without 8-view test-time averaging).

    .venv/bin/python benchmarks/bench_training.py [--crops 120] [--epochs 40] [--views 1]

With ``--commands``: the whole ``chromosort train`` command on all the WT crops instead, cold
(an empty user cache: features, ONNX export and the design search all computed) and again on
the same crops (the retrain), each as a multiple of one anchor pass over the crops x 8 views
(eager torchvision ``squeezenet1_1``, batch 32, 224 px, ``torch.inference_mode``, measured in the
same run just before and after each command, the mean of the two; see bench_inference.py), with
the command's CPU seconds and the load average.

With ``--corrections``: the correction loop's retraining (Review least sure in napari,
``classification.corrections``): the bundled model's head refitted on the WT crops + the 20
least sure calls of a Giemsa spread corrected by hand, from cached features; its seconds beside
the target (2 s), as the number of crops the anchor (bench_inference.py) reads in the same
time, and beside the full design search of ``chromosort train`` on the same features.

Uses the WT crops + SqueezeNet ImageNet features file from ../shared when present, else
synthetic crops and a random backbone. Reports ratios; never asserts timings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def load_data(n_crops: int, seed: int):
    from napari_chromosome_sort.classification.training import scan_folder

    wt = SHARED / "data" / "ikemoto_crops_wt"
    weights = SHARED / "weights" / "squeezenet1_1_imagenet_features.pth"
    if wt.is_dir() and weights.is_file():
        paths, y, classes = scan_folder(wt)
        images = np.asarray(paths, dtype=object)
        source = f"WT crops ({wt})"
    else:
        from napari_chromosome_sort.synthetic import make_crop

        rng = np.random.default_rng(seed)
        classes = ["A", "B", "C"]
        y = np.repeat([0, 1, 2], 100)
        images = np.empty(len(y), dtype=object)
        images[:] = [make_crop(classes[k], rng) for k in y]
        weights, source = "random", "synthetic crops"
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(
        idx,
        train_size=n_crops,
        test_size=min(n_crops, len(y) - n_crops),
        stratify=y,
        random_state=seed,
    )
    return images, y, classes, tr, te, str(weights), source


def train_head_epochs(feature_fn, y_tr, k, dim, epochs, seed, views, batch=32):
    """Adam on a PooledHead; ``feature_fn(idx, view)`` gives (len(idx), D) features."""
    from napari_chromosome_sort.classification.models.classifier import PooledHead

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = PooledHead(dim, k)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    yt = torch.from_numpy(y_tr).long()
    counts = np.bincount(y_tr, minlength=k)
    weight = torch.tensor(len(y_tr) / (k * np.maximum(counts, 1)), dtype=torch.float32)
    for epoch in range(epochs):
        view = epoch % views
        order = rng.permutation(len(y_tr))
        for s in range(0, len(order), batch):
            b = order[s : s + batch]
            f = feature_fn(b, view)
            if epoch == 0 and s == 0:  # standardisation from the first batch (same for both)
                head.mu.copy_(f.mean(0))
                head.sigma.copy_(f.std(0).clamp_min(1e-3))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(f), yt[b], weight=weight)
            loss.backward()
            opt.step()
    return head.eval()


def command_ratios(repeats: int = 2) -> None:
    """Cold train and retrain of the whole ``chromosort train`` command as ratios to the anchor,
    measured just before and just after each command (their mean: the load of a shared machine
    drifts)."""
    import json
    import os
    import resource
    import subprocess
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import anchor_rate

    wt = SHARED / "data" / "ikemoto_crops_wt"
    weights = SHARED / "weights" / "squeezenet1_1_imagenet_features.pth"
    if not (wt.is_dir() and weights.is_file()):
        raise SystemExit("--commands needs the WT crops and the SqueezeNet weights in ../shared")
    n = sum(1 for p in wt.glob("*/*") if p.suffix.lower() in (".jpg", ".png"))

    def anchor() -> float:
        """Crops/s of the anchor, printed with the load average."""
        rate = anchor_rate(repeats)
        print(
            f"anchor: {rate:.1f} crops/s; one pass over {n} crops x 8 views = "
            f"{n * 8 / rate:.1f} s; load average {os.getloadavg()[0]:.2f}"
        )
        return rate

    def child_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = anchor()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CHROMOSORT_CACHE_DIR=str(Path(tmp) / "cache"))
        command = [sys.executable, "-m", "napari_chromosome_sort.cli", "train", str(wt)]
        command += ["--out", str(Path(tmp) / "m.safetensors"), "--weights", str(weights)]
        command += ["--quiet"]
        for label in ("cold train (empty user cache)", "retrain (same crops)"):
            start, cpu = time.perf_counter(), child_cpu()
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            seconds, cpu = time.perf_counter() - start, child_cpu() - cpu
            load = os.getloadavg()[0]
            after = anchor()
            anchor_pass = n * 8 / ((before + after) / 2)
            head = json.loads(done.stdout.strip().splitlines()[-1])["head"]
            print(
                f"{label:31s}: {seconds:6.1f} s ({cpu:.1f} s CPU) = {seconds / anchor_pass:.3f}x "
                f"the anchor pass; design {head}; load average {load:.2f}"
            )
            before = after


def correction_ratios(repeats: int = 5, corrections: int = 20) -> None:
    """Retraining after corrections (``CorrectionSession.retrain``) against the anchor pass over
    the features it reuses and against the full head search on the same features."""
    import os
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import Anchor, seconds

    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.classification.training import TrainingConfig, train_head
    from napari_chromosome_sort.classification.training.corrections import CorrectionSession
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.progress import run_to_end

    wt = SHARED / "data" / "ikemoto_crops_wt"
    spread = SHARED / "data" / "giemsa_spreads_ddx11" / "images" / "1.png"
    if not (wt.is_dir() and spread.is_file()):
        raise SystemExit("--corrections needs the WT crops and the Giemsa spreads in ../shared")
    model = load_model(bundled_model_path())
    prediction = predict_spread(model, read_image(spread))
    with tempfile.TemporaryDirectory() as tmp:
        session = CorrectionSession(
            model, prediction, CropDataset(Path(tmp) / "d"), spread.name, "DDX11", wt
        )
        run_to_end(session.prepare())

        def correct_next() -> None:
            label = session.least_sure()[0]
            row = session.table[session.table["label"] == label].iloc[0]
            session.correct(label, next(c for c in session.classes if c != row["class"]))

        for _ in range(corrections - repeats):
            correct_next()
        run_to_end(session.retrain())  # the first retraining of the session
        anchor = Anchor()
        times, ratios = [], []
        for _ in range(repeats):  # as in napari: one more correction, then Retrain
            correct_next()
            before = anchor.per_crop()
            took = seconds(lambda: run_to_end(session.retrain()))
            after = anchor.per_crop()
            times.append(took)
            ratios.append(took / ((before + after) / 2))
        n = len(session.training_set()[1])
        X, y = session.training_set()
        search = seconds(
            lambda: run_to_end(train_head(X, y, session.classes, TrainingConfig(cache_dir=None)))
        )
    took = float(np.median(times))
    print(
        f"retrain after each of corrections {corrections - repeats + 1}-{corrections} of "
        f"{spread.name} ({n} crops): median {took:.2f} s, worst {max(times):.2f} s (target "
        f"<= 2 s) = the anchor's time for {float(np.median(ratios)):.0f} crops; the full design "
        f"search on the same features {search:.1f} s ({search / took:.0f}x); load average "
        f"{os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    from napari_chromosome_sort.classification.features import (
        Preprocessing,
        dihedral,
        extract_features,
        preprocess,
    )
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.progress import run_to_end

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=120, help="training crops")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--views", type=int, default=1, help="dihedral views cycled over epochs")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--commands", action="store_true", help="time chromosort train cold and again instead"
    )
    ap.add_argument(
        "--corrections", action="store_true", help="time the correction loop's retraining"
    )
    args = ap.parse_args()
    if args.corrections:
        correction_ratios()
        return
    if args.commands:
        command_ratios()
        return

    images, y, classes, tr, te, weights, source = load_data(args.crops, args.seed)
    k = len(classes)
    backbone = build_backbone("squeezenet1_1", weights=weights)
    prep = Preprocessing(size=args.input_size)
    print(
        f"data: {source}; {len(tr)} training / {len(te)} test crops; backbone squeezenet1_1 "
        f"({backbone.weights_source}); {args.epochs} epochs, {args.views} view(s)"
    )
    test_features = run_to_end(extract_features(backbone, list(images[te]), prep, views=1))
    x_test = torch.from_numpy(test_features[:, 0])

    def accuracy(head):
        with torch.no_grad():
            return float((head(x_test).argmax(1).numpy() == y[te]).mean())

    # (a) cached: features of every training crop, every view, once
    from napari_chromosome_sort.classification.features import clear_memory_cache

    clear_memory_cache()
    t0 = time.perf_counter()
    cached = run_to_end(extract_features(backbone, list(images[tr]), prep, views=args.views))
    cached_t = torch.from_numpy(cached)
    head_a = train_head_epochs(
        lambda b, v: cached_t[b, v],
        y[tr],
        k,
        backbone.feature_dim,
        args.epochs,
        args.seed,
        args.views,
    )
    time_cached = time.perf_counter() - t0

    # (b) naive: the frozen backbone runs over every crop in every epoch
    t0 = time.perf_counter()
    train_images = list(images[tr])

    def naive_features(b, v):
        with torch.no_grad():
            x = dihedral(preprocess([train_images[i] for i in b], prep), v)
            return backbone(x)

    head_b = train_head_epochs(
        naive_features, y[tr], k, backbone.feature_dim, args.epochs, args.seed, args.views
    )
    time_naive = time.perf_counter() - t0

    print(f"(a) cached features : {time_cached:8.1f} s   held-out accuracy {accuracy(head_a):.3f}")
    print(f"(b) naive           : {time_naive:8.1f} s   held-out accuracy {accuracy(head_b):.3f}")
    print(f"speed-up cached vs naive: {time_naive / time_cached:.1f}x")

    # prediction speed of a full model
    from napari_chromosome_sort.classification.models.classifier import ChromosomeClassifier

    model = ChromosomeClassifier(backbone, head_a, classes, prep).eval()
    sample = list(images[te][:64])
    for views in (1, model.prediction_views, 8):
        t0 = time.perf_counter()
        model.predict_proba(sample, views=views)
        dt = time.perf_counter() - t0
        print(
            f"prediction, {views} view(s): "
            f"{len(sample) / dt:6.1f} crops/s ({torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
