"""Few-shot: a pretrained nuclei model on an image type it never saw, as is, fine-tuned on
k labelled images of that type, and against training from scratch on the same k images.

    python benchmarks/fewshot.py types                   # cluster DSB2018 into image types
    python benchmarks/fewshot.py base --minutes 100 --save runs/fewshot/base.skunet
    python benchmarks/fewshot.py run runs/fewshot/base.skunet  # k = 5 and 10, 3 min each
    python benchmarks/fewshot.py run BASE.skunet --smoke # a minute, to check the wiring
    python benchmarks/fewshot.py table                   # the docs table from the records

``types`` clusters the 484 shared DSB2018 training images by what distinguishes their
kinds (k-means on the standardised log image size, log median nucleus area, log mean
intensity and foreground fraction, seed 0) and saves every file's type with the
clusters' summaries to ``benchmarks/results/dsb2018_types.json``. The held-out type is
the cluster with the largest nuclei (``--type`` picks another).

``base`` trains the shipped ``nuclei`` model's recipe (the nuclei benchmark's ``cpu``
configuration for ``--base-epochs``, 100) on every image outside the held-out type and
saves it. ``run`` then draws k images of the type (seed 0; the rest of the type is the
test set) and compares on the rest, by AP at IoU 0.5 / 0.75 / 0.9:

- **pretrained**: the base model as it is, its own calibrated thresholds;
- **fine-tuned**: ``skunet.pretrained.fine_tune`` from the base model file on the k
  images for at most ``--minutes``, as a user calls it (``FINE_TUNING``; one of the k
  images held out to calibrate the thresholds);
- **scratch**: ``fine_tune`` of the base's recipe unfitted (fresh weights, its own
  learning rate, ``FINE_TUNING``'s augmentation), the same images, minutes and held-out
  image.

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
from skunet.pretrained import FINE_TUNING, UNTIL_THE_MINUTES, fine_tune

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
    epochs = {} if args.smoke else {"max_epochs": args.base_epochs}
    seg = with_time_limit(recipe(args, verbose=1, **epochs), args.minutes)
    start = time.perf_counter()
    seg.fit([X[i] for i in others], [y[i] for i in others])
    path = seg.save(args.save, overwrite=False)
    print(
        f"base: {len(others)} images outside type {held_out}, "
        f"{time.perf_counter() - start:.0f} s; saved {path}"
    )


def run(args: argparse.Namespace) -> None:
    X, y, held_out, of_type, _ = split_by_type(args)
    rng = np.random.default_rng(args.seed)
    order = [of_type[i] for i in rng.permutation(len(of_type))]
    # the fine-tuning as run: the recipe, bounded by --epochs (the time binds), --set
    tuning = {"max_epochs": args.epochs, **parse_settings(args.set)}
    base = UNetSegmenter.load(args.base)  # as it is: the same for every k
    figures = {
        "type": held_out,
        "type_images": len(of_type),
        "base": str(args.base),
        "base_epochs": len(base.history),
        "fine_tuning": {  # FINE_TUNING as run (objects by their repr)
            k: v if isinstance(v, int | float | str | None) else repr(v)
            for k, v in {**FINE_TUNING, **tuning}.items()
        },
        "calibration": "fine_tune's: one of the k images held out",
        "k": {},
    }
    test = order[max(args.k) :]  # one test set for every k
    test = test[:4] if args.smoke else test
    X_test, y_test = [X[i] for i in test], [y[i] for i in test]
    as_is = object_scores(y_test, list(base.predict_instances(X_test)))
    for k in args.k:
        X_k, y_k = [X[i] for i in order[:k]], [y[i] for i in order[:k]]
        rows = {"pretrained": as_is}
        models = {"fine-tuned": args.base}
        if not args.no_scratch:
            models["scratch"] = recipe(args)
        for name, model in models.items():
            seg = fine_tune(model, X_k, y_k, minutes=args.minutes, **tuning)
            rows[name] = {
                **object_scores(y_test, list(seg.predict_instances(X_test))),
                "fit_seconds": seg.fine_tuned_["seconds"],
                "epochs": seg.fine_tuned_["epochs"],
                "images_trained_on": seg.fine_tuned_["images"],
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
    for each record (by its name and the fine-tuning's learning rate)."""
    lines = [
        "| run | fine-tuning lr | k | model | AP@0.5 | AP@0.75 | AP@0.9 | training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, record in records.items():
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
                    f"| {run} | {record['fine_tuning']['lr']:g} | {k} | {name} "
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
    parser.add_argument(
        "--epochs", type=int, default=UNTIL_THE_MINUTES, help="run: max_epochs (the minutes bind)"
    )
    parser.add_argument(
        "--base-epochs", type=int, default=100, help="base: max_epochs (the shipped nuclei's)"
    )
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
