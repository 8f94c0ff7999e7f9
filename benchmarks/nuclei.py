"""Object accuracy of the nuclei preset on held-out DSB2018 images.

    python benchmarks/nuclei.py --config cpu    # about 20 minutes on 2 CPU cores
    python benchmarks/nuclei.py --config gpu    # the full preset, on a CUDA GPU
    python benchmarks/nuclei.py --table         # the docs table from the results file
    python benchmarks/nuclei.py --config cpu --variants distance stardist   # beside StarDist
    python benchmarks/nuclei.py --config cpu --all-images --save DIR  # a model to ship

The ``stardist`` variant is the peer: StarDist 2D trained from scratch, in its own
environment (``--peer-python``, default ``.venv-stardist/bin/python``; see docs/tasks/nuclei.md),
by ``benchmarks/stardist_peer.py`` for the wall time our first variant trained in this
run (or ``--minutes``), on the same training images, with the same validation
images for its ``optimize_thresholds``, scored here by the same code.

Holds out a fixed 15 % of ``shared/data/dsb2018/train`` by image (seed 0), trains
``skunet.presets.nuclei_segmenter`` on the rest as each variant (the preset's distance
levels, 3 classes, 2 classes + connected components) and reports, on the held-out
images, StarDist's object metrics pooled over images: AP (= tp / (tp + fp + fn)) at IoU
0.5 ... 0.9 and F1 at 0.5, with the wall time and the device. Each configuration's record
(command, date, machine) is kept under its own key in ``benchmarks/results/nuclei.json``.
``--all-images`` trains on all 484 images (its validation tenth still chooses the
checkpoint and the thresholds) and records only the training: the figures of such a
model are those of the same command without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _object_table import table
from _record import (
    RESULTS,
    add_common_arguments,
    add_trial_arguments,
    load,
    parse_settings,
    update,
    with_time_limit,
)
from skorch.dataset import ValidSplit

from skunet.adaptation import CHANNEL_WEIGHTS, adapt_input
from skunet.calibration import IOU_THRESHOLDS
from skunet.callbacks import TimeLimit
from skunet.datasets import load_dsb2018
from skunet.intake.sampling import ImageSet
from skunet.metrics import aji_score, match_dataset
from skunet.presets import nuclei_segmenter
from skunet.pretrained import open_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"
VARIANTS = {
    "2class": {"target": "mask"},  # binary U-Net, connected components
    "3class": {"target": "boundary"},  # background / interior / boundary, watershed
    "distance": {},  # the preset: 4 distance levels, watershed from the top ones
}
# Overrides of the preset for each configuration; "gpu" is the preset as it is.
CONFIGS = {
    # 16 channels, one patch per image, bfloat16 where the CPU has it natively; at most
    # 22 minutes of training (about 28 epochs on 2 AVX-512 BF16 cores)
    "cpu": {
        "module__base_channels": 16,
        "patches_per_image": 1,
        "max_epochs": 28,
        "autocast": "auto",
        "train_split": ValidSplit(0.1, random_state=0),
        "callbacks": [("time_limit", TimeLimit(22))],
    },
    "gpu": {},
    "smoke": {"module__base_channels": 8, "module__depth": 3, "max_epochs": 1},
}
RESULTS_FILE = RESULTS / "nuclei.json"
PEER = Path(__file__).parent / "stardist_peer.py"
PEER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-stardist" / "bin" / "python"


def split(n: int, fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out and training image indices: a fixed random ``fraction`` of the images."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(n * fraction)
    return np.sort(order[:n_test]), np.sort(order[n_test:])


def object_scores(y_test: list, pred: list) -> dict:
    """AP at each IoU threshold and the counts at 0.5, pooled over the images."""
    matches = match_dataset(y_test, pred, thresh=list(IOU_THRESHOLDS))
    at50 = matches[0]
    return {
        "ap": {f"{m.thresh:.2f}": m.accuracy for m in matches},
        "f1_50": at50.f1,
        "precision_50": at50.precision,
        "recall_50": at50.recall,
        "panoptic_quality_50": at50.panoptic_quality,
        "aji": aji_score(y_test, pred),
        "n_true": at50.n_true,
        "n_pred": at50.n_pred,
    }


def per_megapixel(seconds: float, images: list) -> float:
    """Seconds per megapixel of ``images`` (2-D, or RGB with channels last)."""
    return round(seconds / (sum(x.shape[0] * x.shape[1] for x in images) / 1e6), 2)


def variant_params(name: str, args: argparse.Namespace) -> dict:
    """The preset's overrides for one of our variants: configuration, variant, command line."""
    config = args.configs[args.config]  # the dataset's configurations (main sets them)
    params = {**config, **VARIANTS[name], "device": args.device, "random_state": 0}
    if args.epochs:
        params["max_epochs"] = args.epochs
    return {**params, **parse_settings(args.set)}


def run_peer(args: argparse.Namespace, data, seconds: float) -> dict:
    """StarDist 2D for ``seconds`` of training, in its own environment; scored here. Its
    validation images are those our 3-class variant holds out."""
    (X_train, y_train), (X_test, y_test) = data
    # StarDist knows no unannotated pixels (-1, the gaps of he_data.py's mosaics): there
    # they are background, as the white gaps look
    y_train = [np.maximum(m, 0) for m in y_train]
    train_split = nuclei_segmenter(**variant_params("3class", args)).train_split
    _, valid = train_split(ImageSet(X_train))
    chosen = set(valid.indices)
    train = [i for i in range(len(X_train)) if i not in chosen]
    arrays = {
        **{f"train_{k}": X_train[i] for k, i in enumerate(train)},
        **{f"train_labels_{k}": y_train[i] for k, i in enumerate(train)},
        **{f"valid_{k}": X_train[i] for k, i in enumerate(sorted(chosen))},
        **{f"valid_labels_{k}": y_train[i] for k, i in enumerate(sorted(chosen))},
        **{f"test_{k}": x for k, x in enumerate(X_test)},
    }
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "split.npz", **arrays)
        command = [
            args.peer_python,
            str(PEER),
            f"{tmp}/split.npz",
            f"{tmp}/out.npz",
            "--seconds",
            str(seconds),
        ]
        print(f"stardist: {' '.join(command)}", flush=True)
        with open(Path(tmp) / "log", "w+") as log:  # Keras' progress bars stay out
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
            log.seek(0)
            lines = log.read().splitlines()
        if done.returncode:
            print("\n".join(lines[-20:]), flush=True)
            raise subprocess.CalledProcessError(done.returncode, command)
        out = np.load(Path(tmp) / "out.npz")
        record = json.loads(str(out["record"]))
        pred = [out[f"test_{k}"] for k in range(len(X_test))]
    result = {**record, **object_scores(y_test, pred), "budget_seconds": round(seconds, 1)}
    result["seconds_per_megapixel"] = per_megapixel(record["predict_seconds"], X_test)
    result["params"] = {"max_epochs": record["epochs"]}
    result["epochs_run"] = record["epochs"]
    print(
        f"{args.config} stardist: AP@0.5 {result['ap']['0.50']:.3f}  AP@0.75 "
        f"{result['ap']['0.75']:.3f}  F1@0.5 {result['f1_50']:.3f}  fit "
        f"{record['fit_seconds']:.0f} s ({record['steps']} steps)",
        flush=True,
    )
    return result


def saved_path(args: argparse.Namespace, variant: str) -> Path:
    """Where ``--save`` writes a variant's model."""
    return args.save / f"{args.name or args.config}-{variant}.skunet"


def run_variant(name: str, args: argparse.Namespace, data) -> dict:
    (X_train, y_train), (X_test, y_test) = data
    params = variant_params(name, args)
    if args.init:  # a longer run in two: the saved network trained on by the same recipe
        if args.adapt:  # a one-channel model for more channels: a new model's start
            seg = adapt_input(args.init, args.adapt, device=args.device)
        else:
            seg = open_model(args.init, device=args.device)
        recipe = {k: v for k, v in params.items() if not k.startswith("module__")}
        seg.set_params(warm_start=True, verbose=args.verbose, **recipe)  # weights kept
    else:
        seg = nuclei_segmenter(verbose=args.verbose, **params)
    seg = with_time_limit(seg, args.minutes)
    config, before = args.config, len(seg.history or [])
    start = time.perf_counter()
    seg.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    seg.set_params(warm_start=False)  # the saved model's fit starts afresh, as the preset's
    if args.save:  # for decoding experiments without training again
        print(f"saved: {seg.save(saved_path(args, name))}")
    if not X_test:  # --all-images: nothing held out to score
        result = {"params": {"max_epochs": seg.max_epochs}, **training_figures(seg, fit_seconds)}
        print(f"trained on every image: {result}", flush=True)
        return result
    start = time.perf_counter()
    predictor = seg.predictor_
    probabilities = predictor.probabilities(predictor.check_images(X_test))
    pred = [predictor.instances(p) for p in probabilities]  # the model's own (calibrated)
    predict_seconds = time.perf_counter() - start
    # the same probabilities decoded with the uncalibrated defaults
    uncalibrated = dataclasses.replace(predictor, instance_threshold=0.5, instance_split="auto")
    default = [uncalibrated.instances(p) for p in probabilities]
    # the other test-time setting: with the flips averaged before decoding, or without
    flips = not predictor.settings.tta
    other = dataclasses.replace(
        predictor, settings=dataclasses.replace(predictor.settings, tta=flips)
    )
    start = time.perf_counter()
    other_pred = other.predict_instances(X_test)
    other_seconds = time.perf_counter() - start
    other_key = "tta" if flips else "no_tta"
    result = {
        "params": {
            k: getattr(v, "__name__", v)
            for k, v in seg.get_params(deep=False).items()
            if k
            in (
                "n_classes",
                "target",
                "max_epochs",
                "batch_size",
                "patch_size",
                "patches_per_image",
                "lr",
                "normalize",
            )
        }
        | {k: v for k, v in params.items() if k.startswith("module__")},
        **object_scores(y_test, pred),
        "ap_defaults": {
            f"{m.thresh:.2f}": m.accuracy
            for m in match_dataset(y_test, default, thresh=list(IOU_THRESHOLDS))
        },
        other_key: {
            **object_scores(y_test, list(other_pred)),
            "predict_seconds": round(other_seconds, 1),
        },
        **training_figures(seg, fit_seconds),
        **({"epochs_before": before} if before else {}),  # --init: the saved model's
        **({"adapted": seg.adapted_} if hasattr(seg, "adapted_") else {}),
        "predict_seconds": round(predict_seconds, 1),
        "seconds_per_megapixel": per_megapixel(predict_seconds, X_test),
    }
    print(
        f"{config} {name}: AP@0.5 {result['ap']['0.50']:.3f}  AP@0.75 {result['ap']['0.75']:.3f}"
        f"  F1@0.5 {result['f1_50']:.3f} (defaults: AP@0.5 {result['ap_defaults']['0.50']:.3f}"
        f"  AP@0.75 {result['ap_defaults']['0.75']:.3f}; chosen {result['instance_params']};"
        f" {other_key}: AP@0.5 {result[other_key]['ap']['0.50']:.3f}"
        f" AP@0.75 {result[other_key]['ap']['0.75']:.3f})"
        f"  fit {fit_seconds:.0f} s  predict "
        f"{predict_seconds:.0f} s",
        flush=True,
    )
    return result


def training_figures(seg, fit_seconds: float) -> dict:
    """What a training reports without held-out images: its chosen instance settings,
    validation scores, epochs and time."""
    calibration = getattr(seg, "calibration_", None)
    return {
        "instance_params": getattr(seg, "instance_params_", None),
        "validation_mean_ap": None
        if calibration is None
        else {"calibrated": calibration.score, "defaults": calibration.default_score},
        "epochs_run": len(seg.history),
        "best_valid_iou": float(np.nanmax(seg.history[:, "valid_iou"]))
        if "valid_iou" in seg.history[-1]
        else None,
        "fit_seconds": round(fit_seconds, 1),
    }


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What the benchmark runs on: DSB2018 here, H&E in ``he_nuclei.py``."""

    name: str
    data: Path  # the default --data
    results: Path  # the default --out
    load: Callable[[Path], tuple[list, list]]
    configs: dict = dataclasses.field(default_factory=lambda: CONFIGS)
    doc: str | None = None


DSB2018 = Dataset("DSB2018", DEFAULT_DATA, RESULTS_FILE, lambda d: load_dsb2018(d, progress=False))


def main(dataset: Dataset = DSB2018) -> None:
    parser = argparse.ArgumentParser(description=(dataset.doc or __doc__).splitlines()[0])
    parser.set_defaults(configs=dataset.configs)
    parser.add_argument("--config", choices=sorted(dataset.configs), default="cpu")
    add_common_arguments(parser, dataset.data, dataset.results)
    parser.add_argument(
        "--variants", nargs="+", choices=[*VARIANTS, "stardist"], default=["distance"]
    )
    parser.add_argument(
        "--peer-python",
        default=os.environ.get("SKUNET_PEER_PYTHON", str(PEER_PYTHON)),
        help="python of the environment with stardist and tensorflow-cpu",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N",
        help="train on the first N of the dataset's training images only (--train-also "
        "images come on top: --limit 0 trains on those alone)",
    )  # fmt: skip
    add_trial_arguments(parser, "the configuration's name")
    parser.add_argument("--save", type=Path, help="a folder to save each trained model in")
    parser.add_argument(
        "--all-images",
        action="store_true",
        help="train on every image, hold none out (a model to ship; no held-out figures)",
    )
    parser.add_argument(
        "--train-also", type=Path, nargs="+", default=[], metavar="DIR",
        help="more training images (the --data layout); the held-out images stay the same",
    )  # fmt: skip
    parser.add_argument("--init", type=Path, help="continue a saved model of the same split")
    parser.add_argument(
        "--adapt", choices=sorted(CHANNEL_WEIGHTS),
        help="--init is a one-channel model (e.g. nuclei): adapt it to the images' channels",
    )  # fmt: skip
    args = parser.parse_args()
    if args.table:
        print(table(load(args.out)))
        return
    if args.save:  # before hours of training, not after: the folder, and nothing overwritten
        args.save.mkdir(parents=True, exist_ok=True)
        taken = [p for v in args.variants if (p := saved_path(args, v)).exists()]
        if taken:
            sys.exit(f"--save would overwrite {', '.join(map(str, taken))}; choose another --name")
    X, y = dataset.load(args.data)
    test, train = split(len(X))
    if args.all_images:
        if "stardist" in args.variants:
            sys.exit("--all-images holds no image out to score the peer on")
        test, train = [], np.arange(len(X))
    train = train[: args.limit]  # None: all of them
    X_train, y_train = [X[i] for i in train], [y[i] for i in train]
    for folder in args.train_also:  # after the split: they never change the held-out images
        X_more, y_more = dataset.load(folder)
        X_train, y_train = X_train + X_more, y_train + y_more
    if not X_train:
        sys.exit("no training images: --limit 0 trains on --train-also images alone")
    data = ((X_train, y_train), ([X[i] for i in test], [y[i] for i in test]))
    more = len(X_train) - len(train)
    print(
        f"{dataset.name}: {len(X_train)} training images"
        + (f" ({more} from --train-also)" if more else "")
        + f", {len(test)} held out; config {args.config} on {args.device}",
        flush=True,
    )
    start = time.perf_counter()
    variants = {}
    for v in args.variants:
        if v == "stardist":  # the peer trains for as long as our first network did
            ours = next((r["fit_seconds"] for r in variants.values()), None)
            if ours is None and not args.minutes:
                sys.exit("--variants stardist needs one of ours before it, or --minutes")
            try:
                variants[v] = run_peer(args, data, ours or args.minutes * 60)
            except (OSError, subprocess.CalledProcessError) as exc:  # ours are kept
                print(f"stardist failed: {exc}", flush=True)
        else:
            variants[v] = run_variant(v, args, data)
    figures = {
        "held_out_images": len(test),
        "training_images": len(X_train),
        **({"train_also": [f.as_posix() for f in args.train_also]} if args.train_also else {}),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "settings": args.set,
        "minutes": args.minutes,
        **({"init": args.init.as_posix()} if args.init else {}),
        "variants": variants,
    }
    if args.config != "smoke":
        results = update(args.out, args.name or args.config, figures)
        print(f"\n{table(results)}\n\nwritten: {args.out}")


if __name__ == "__main__":
    main()
