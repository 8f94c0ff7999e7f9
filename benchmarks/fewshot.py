"""Few-shot: a pretrained nuclei model on an image type it never saw, as is, fine-tuned on
k labelled images of that type, and against training from scratch on the same k images.

    python benchmarks/fewshot.py types                   # cluster DSB2018 into image types
    python benchmarks/fewshot.py base --minutes 60       # the preset without the held-out type
    python benchmarks/fewshot.py run BASE.skunet         # k = 5 and 10, 3 minutes each
    python benchmarks/fewshot.py run BASE.skunet --smoke # a minute, to check the wiring
    python benchmarks/fewshot.py table                   # the docs table from the records

``types`` clusters the 484 shared DSB2018 training images by what distinguishes their
kinds (k-means on the standardised log image size, log median nucleus area, log mean
intensity and foreground fraction, seed 0) and saves every file's type with the
clusters' summaries to ``benchmarks/results/dsb2018_types.json``. The held-out type is
the cluster with the largest nuclei (``--type`` picks another).

``base`` trains the nuclei benchmark's ``cpu`` configuration on every image outside the
held-out type and saves it. ``run`` then draws k images of the type (seed 0; the rest of
the type is the test set) and compares on the rest, by AP at IoU 0.5 / 0.75 / 0.9:

- **pretrained**: the base model as it is, its own calibrated thresholds;
- **fine-tuned**: ``skunet.pretrained.FINE_TUNING`` from the base weights on the k images
  for at most ``--minutes`` (TimeLimit), thresholds re-calibrated on the k images;
- **scratch**: the same recipe as the base, fresh weights, on the same k images for the
  same minutes, thresholds calibrated the same way.

Records go to ``benchmarks/results/fewshot.json`` with the command, date and machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _record import RESULTS, load, parse_settings, update, with_time_limit
from nuclei import CONFIGS, DEFAULT_DATA, object_scores
from sklearn.cluster import KMeans

from skunet import UNetSegmenter
from skunet.datasets import load_dsb2018
from skunet.presets import nuclei_segmenter
from skunet.pretrained import FINE_TUNING

TYPES_FILE = RESULTS / "dsb2018_types.json"
RESULTS_FILE = RESULTS / "fewshot.json"
FEATURES = ("log_pixels", "log_nucleus_area", "log_mean_intensity", "foreground_fraction")


def image_features(x: np.ndarray, labels: np.ndarray) -> list[float]:
    n = int(labels.max())
    areas = np.bincount(labels.ravel())[1:]
    area = float(np.median(areas[areas > 0])) if n else 1.0
    return [
        float(np.log(x.shape[0] * x.shape[1])),
        float(np.log(area)),
        float(np.log(x.astype(np.float64).mean() + 1)),
        float((labels > 0).mean()),
    ]


def find_types(args: argparse.Namespace) -> dict:
    names = [p.stem for p in sorted((args.data / "train" / "images").iterdir())]
    X, y = load_dsb2018(args.data, progress=False)
    features = np.array([image_features(x, m) for x, m in zip(X, y)])
    scaled = (features - features.mean(0)) / features.std(0)
    types = KMeans(args.n_types, n_init=10, random_state=0).fit_predict(scaled)
    summary = {
        str(t): {
            "images": int((types == t).sum()),
            **{
                f: round(float(np.median(features[types == t, i])), 3)
                for i, f in enumerate(FEATURES)
            },
        }
        for t in range(args.n_types)
    }
    held_out = max(summary, key=lambda t: summary[t]["log_nucleus_area"])
    result = {
        "features": FEATURES,
        "held_out_type": held_out,
        "held_out_reason": "the largest median nucleus area",
        "types": summary,
        "files": dict(zip(names, map(int, types))),
    }
    TYPES_FILE.write_text(json.dumps(result, indent=1) + "\n")
    for t, s in summary.items():
        print(f"type {t}: {s}" + ("  <- held out" if t == held_out else ""))
    print(f"written: {TYPES_FILE}")
    return result


def split_by_type(args: argparse.Namespace):
    types = json.loads(TYPES_FILE.read_text())
    held_out = int(args.type if args.type is not None else types["held_out_type"])
    X, y = load_dsb2018(args.data, progress=False)
    names = [p.stem for p in sorted((args.data / "train" / "images").iterdir())]
    of_type = [i for i, n in enumerate(names) if types["files"][n] == held_out]
    others = [i for i, n in enumerate(names) if types["files"][n] != held_out]
    return X, y, held_out, of_type, others


def recipe(args: argparse.Namespace, **extra) -> UNetSegmenter:
    params = {**CONFIGS["smoke" if args.smoke else "cpu"], "random_state": 0, **extra}
    return nuclei_segmenter(**params)


def train_base(args: argparse.Namespace) -> None:
    X, y, held_out, _, others = split_by_type(args)
    seg = with_time_limit(recipe(args, verbose=1), args.minutes)
    start = time.perf_counter()
    seg.fit([X[i] for i in others], [y[i] for i in others])
    path = seg.save(args.save, overwrite=False)
    print(
        f"base: {len(others)} images outside type {held_out}, "
        f"{time.perf_counter() - start:.0f} s; saved {path}"
    )


def adapted(seg: UNetSegmenter, X: list, y: list, minutes: float) -> tuple[UNetSegmenter, float]:
    """``seg`` trained on X / y for at most ``minutes``, thresholds calibrated on them."""
    with_time_limit(seg, minutes)
    start = time.perf_counter()
    seg.fit(X, y)
    seconds = time.perf_counter() - start
    seg.calibrate_instances(X, y)
    return seg, seconds


def run(args: argparse.Namespace) -> None:
    X, y, held_out, of_type, _ = split_by_type(args)
    rng = np.random.default_rng(args.seed)
    order = [of_type[i] for i in rng.permutation(len(of_type))]
    # the fine-tuning as run: the recipe, bounded by --epochs (the time binds), --set
    tuning = {**FINE_TUNING, "max_epochs": args.epochs, **parse_settings(args.set)}
    figures = {
        "type": held_out,
        "type_images": len(of_type),
        "base": str(args.base),
        "fine_tuning": tuning,
        "k": {},
    }
    test = order[max(args.k) :]  # one test set for every k
    test = test[:4] if args.smoke else test
    X_test, y_test = [X[i] for i in test], [y[i] for i in test]
    base = UNetSegmenter.load(args.base)  # as it is: the same for every k
    as_is = object_scores(y_test, list(base.predict_instances(X_test)))
    for k in args.k:
        X_k, y_k = [X[i] for i in order[:k]], [y[i] for i in order[:k]]
        rows = {"pretrained": as_is}
        tuned = UNetSegmenter.load(args.base).set_params(**tuning)
        tuned, seconds = adapted(tuned, X_k, y_k, args.minutes)
        rows["fine-tuned"] = {
            **object_scores(y_test, list(tuned.predict_instances(X_test))),
            "fit_seconds": round(seconds, 1),
            "epochs": len(tuned.history) - len(base.history),
        }
        if not args.no_scratch:
            scratch = recipe(args, train_split=None, max_epochs=args.epochs)
            scratch.set_params(callbacks__checkpoint=None)
            scratch, seconds = adapted(scratch, X_k, y_k, args.minutes)
            rows["scratch"] = {
                **object_scores(y_test, list(scratch.predict_instances(X_test))),
                "fit_seconds": round(seconds, 1),
                "epochs": len(scratch.history),
            }
        figures["k"][str(k)] = {"test_images": len(test), **rows}
        for name, r in rows.items():
            print(
                f"k={k} {name:10}: AP@0.5 {r['ap']['0.50']:.3f}  AP@0.75 {r['ap']['0.75']:.3f}"
                f"  AP@0.9 {r['ap']['0.90']:.3f}  ({len(test)} test images)",
                flush=True,
            )
    if not args.smoke:
        update(args.out, args.name or f"type{held_out}", figures)
        print(f"written: {args.out}")


def table(records: dict) -> str:
    """The docs table: AP of each model for each k, with its training minutes and epochs,
    for each record (by the fine-tuning's learning rate)."""
    lines = [
        "| run: fine-tuning lr | k | model | AP@0.5 | AP@0.75 | AP@0.9 | training |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records.values():
        for k, rows in record["k"].items():
            for name in ("pretrained", "fine-tuned", "scratch"):
                if name not in rows:
                    continue
                r = rows[name]
                trained = (
                    f"{r['fit_seconds'] / 60:.1f} min, {r['epochs']} epochs"
                    if "fit_seconds" in r
                    else "none"
                )
                lines.append(
                    f"| {record['fine_tuning']['lr']:g} | {k} | {name} "
                    f"| {r['ap']['0.50']:.3f} | {r['ap']['0.75']:.3f} | {r['ap']['0.90']:.3f} "
                    f"| {trained} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["types", "base", "run", "table"])
    parser.add_argument("base", nargs="?", type=Path, help="run: the base model file")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n-types", type=int, default=5)
    parser.add_argument("--type", type=int, help="the held-out type (default: the file's)")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model")
    parser.add_argument("--epochs", type=int, default=200, help="run: max_epochs (the time binds)")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny networks, 4 test images, no record"
    )
    parser.add_argument("--save", type=Path, default=Path("fewshot-base.skunet"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="PARAM=EXPR", help="fine-tuning override"
    )
    parser.add_argument("--no-scratch", action="store_true", help="fine-tuning trials only")
    parser.add_argument("--name", help="the record's key")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    if args.step == "types":
        find_types(args)
    elif args.step == "table":
        print(table(load(args.out)))
    elif args.step == "base":
        train_base(args)
    else:
        if args.base is None:
            parser.error("run needs the base model file")
        run(args)


if __name__ == "__main__":
    main()
