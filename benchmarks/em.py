"""V_rand, V_info and pixel error of the EM preset in 5-fold cross-validation on ISBI 2012.

    python benchmarks/em.py --config cpu        # the "fast" recipe, sized for 2 CPU cores
    python benchmarks/em.py --config cpu_paper  # the 2015 recipe at CPU scale (12 epochs)
    python benchmarks/em.py --config cpu_vrand  # cpu, the checkpoint on validation V_rand
    python benchmarks/em.py --config gpu        # the preset itself (the 2015 paper's recipe)
    python benchmarks/em.py --config cpu --folds 3   # recorded as "cpu, folds [3]"
    python benchmarks/em.py --table             # the docs table from the results file

Trials of a recipe's parameters on a proxy (one fold, fixed seed), kept apart:

    python benchmarks/em.py --config cpu --folds 3 --name bf16 --set autocast=auto \
        --out benchmarks/results/em_trials.json

``--set`` takes ``param=expression`` (torch, skunet's losses, callbacks, ``Augment``).

Splits the 30 labelled slices of ``shared/data/isbi2012`` into 5 folds of 6 consecutive
slices (neighbouring slices look alike, so they stay on one side). For each fold it
trains ``skunet.presets.em_segmenter`` with the configuration's recipe on the other 24
(the estimator holds out 20 % of them for the checkpoint) and scores the held-out slices
from their cell probabilities: V_rand and V_info by the challenge's protocol
(:func:`skunet.metrics.challenge_scores`: the best threshold of 0.0-1.0, with the
threshold), the same scores at the single threshold 0.5 (:func:`skunet.metrics.rand_scores`),
the pixel error at 0.5, its best threshold and V_rand's threshold, the protocol with and
without flip averaging ("variants"; the recipe's ``tta`` gives the fold's figures), V_rand
and V_info of the cells of ``predict_instances`` (:func:`skunet.instances.membrane_instances`
with the model's calibrated threshold and split; a recipe without validation slices, such
as ``fast``, is calibrated on five training slices spread through the fold's training
stack, or ``--calibration-slices``, held out of its training unless ``--no-calibration``)
beside those of the uncalibrated defaults, and the training wall time. It saves a
picture of the slice with the lowest V_rand at 0.5 (image, truth, prediction) beside the
results. Records go under the configuration's key in ``benchmarks/results/em.json`` with
the command, date and machine.

``--keep DIR`` saves each fold's network; ``--keep DIR --reuse`` scores the networks
saved there (new decoders, a new calibration) without training them again, with their
epochs' own time as training time and the fold's record naming the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import numpy as np
from _record import (
    RESULTS,
    add_common_arguments,
    add_trial_arguments,
    device_of,
    fit_seconds,
    load,
    parse_settings,
    spread,
    update,
    with_time_limit,
)
from sklearn.model_selection import KFold
from skorch.dataset import ValidSplit

from skunet import UNetSegmenter
from skunet.augment import Augment
from skunet.callbacks import MetricScoring
from skunet.datasets import load_isbi2012
from skunet.metrics import challenge_scores, rand_scores
from skunet.metrics.rand import PROTOCOL_THRESHOLDS, pixel_error
from skunet.presets import em_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"
RESULTS_FILE = RESULTS / "em.json"

CONFIGS = {
    # the preset as it is: the paper's 64 base channels, SGD 0.99, batch 1 tiles
    "gpu": ("paper", {}),
    # the CPU recipe: a same-padding U-Net on 224 px patches, batch 8, 30 epochs
    "cpu": ("fast", {}),
    # the cpu recipe with 20 % of the slices held out and the checkpoint on their
    # V_rand instead of the last epoch
    "cpu_vrand": (
        "fast",
        {
            "train_split": ValidSplit(0.2, random_state=0),
            "callbacks": [("v_rand", MetricScoring("v_rand"))],
            "callbacks__checkpoint__monitor": "valid_v_rand_best",
        },
    ),
    # the 2015 tiles, weight map and augmentation at CPU scale (the earlier cpu row)
    "cpu_paper": ("paper_small", {"max_epochs": 12}),
    # seconds: checks that the script runs
    "smoke": (
        "fast",
        {
            "module__depth": 2,
            "module__base_channels": 4,
            "patch_size": 60,
            "patches_per_image": 1,
            "augment": Augment(elastic=10),
            "max_epochs": 1,
        },
    ),
}
SCORES = (
    "v_rand",
    "v_info",
    "v_rand_05",
    "v_info_05",
    "v_rand_instances",
    "v_info_instances",
    "v_rand_instances_defaults",
    "pixel_error",
    "pixel_error_best",
    "pixel_error_at_v_rand_threshold",
)


def pixel_errors(truth: list, cells: list) -> dict[float, float]:
    """Mean pixel error over the slices of ``cell probability > t`` for the protocol's
    thresholds t."""
    return {
        float(t): float(np.mean([pixel_error(y, c > t) for y, c in zip(truth, cells)]))
        for t in PROTOCOL_THRESHOLDS
    }


def scores(truth: list, cells: list) -> dict:
    """The protocol's V_rand / V_info with their thresholds, and the pixel error at 0.5,
    at its best threshold and at V_rand's threshold."""
    protocol = challenge_scores(truth, cells)._asdict()
    errors = pixel_errors(truth, cells)
    best = min(errors, key=errors.get)
    return {
        **protocol,
        "pixel_error": errors[0.5],
        "pixel_error_best": errors[best],
        "pixel_error_threshold": best,
        "pixel_error_at_v_rand_threshold": errors[protocol["v_rand_threshold"]],
    }


def calibration_slices(train, n: int) -> list[int]:
    """``n`` of a fold's training slices spread through its stack, the last among them."""
    return sorted(int(train[len(train) - 1 - round(i * len(train) / n)]) for i in range(n))


def configured(args: argparse.Namespace) -> UNetSegmenter:
    """The configuration's segmenter with the command line's settings, unfitted."""
    recipe, overrides = CONFIGS[args.config]
    params = {**overrides, "device": args.device, "random_state": 0, "verbose": args.verbose}
    if args.epochs:
        params["max_epochs"] = args.epochs
    return em_segmenter(recipe, **{**params, **parse_settings(args.set)})


def run_fold(args: argparse.Namespace, X, y, k: int, train, test) -> tuple[dict, tuple]:
    seg = configured(args)
    # a recipe without validation slices (train_split=None) calibrates its cells'
    # threshold and split by V_rand on --calibration-slices training slices spread
    # through the training stack (the last one among them), held out of the training
    held = []
    if seg.train_split is None and not args.no_calibration:
        held = calibration_slices(train, args.calibration_slices)
    kept = args.keep / f"em_{args.name or args.config}_fold{k}.skunet" if args.keep else None
    reused = bool(args.reuse and kept and kept.exists())
    if reused:
        # the fold's network as --keep saved it; its training time is its epochs' own
        seg = UNetSegmenter.load(kept)
        seconds = float(sum(seg.history[:, "dur"]))
    else:
        with_time_limit(seg, args.minutes)
        seconds = fit_seconds(seg, X, y, [i for i in train if i not in held])
    if held:
        seg.calibrate_instances([X[i] for i in held], [y[i] for i in held])
    if kept and not reused:
        # the fold's network, for decoder and post-processing trials without retraining
        args.keep.mkdir(parents=True, exist_ok=True)
        seg.save(kept, overwrite=True)
    truth = [y[i] for i in test]
    # the protocol with and without flip averaging, from one network; the recipe's own
    # setting gives the fold's figures
    own, probabilities = bool(seg.tta), {}
    for tta in (False, True):
        seg.set_params(tta=tta)
        probabilities[tta] = [p[1] for p in seg.predict_proba([X[i] for i in test])]
    seg.set_params(tta=own)
    cells = probabilities[own]
    variants = {"tta" if tta else "plain": scores(truth, c) for tta, c in probabilities.items()}
    protocol = variants["tta" if own else "plain"]
    at_05 = [rand_scores(t, (c > 0.5).astype(np.uint8)) for t, c in zip(truth, cells)]
    # the cells of predict_instances (its own threshold and split), and of the defaults
    cells_of = rand_scores(truth, [seg.predictor_.instances(c[None]) for c in cells])
    uncalibrated = dataclasses.replace(
        seg.predictor_, instance_threshold=0.5, instance_split="auto"
    )
    defaults = rand_scores(truth, [uncalibrated.instances(c[None]) for c in cells])
    worst = int(np.argmin([s.v_rand for s in at_05]))
    fold = {
        **protocol,
        "v_rand_05": float(np.mean([s.v_rand for s in at_05])),
        "v_info_05": float(np.mean([s.v_info for s in at_05])),
        "v_rand_instances": cells_of.v_rand,
        "v_info_instances": cells_of.v_info,
        "v_rand_instances_defaults": defaults.v_rand,
        "instance_params": getattr(seg, "instance_params_", None),
        "calibration_slices": held,
        "reused": str(kept) if reused else None,
        "worst_slice": int(test[worst]),
        "fit_seconds": seconds,
        "epochs_run": len(seg.history),
        "variants": variants,
    }
    return fold, (int(test[worst]), X[test[worst]], truth[worst], cells[worst], at_05[worst].v_rand)


def train_on_all(args: argparse.Namespace, X, y) -> Path:
    """The configuration trained on every slice but the calibration ones, calibrated on
    those and saved in ``--keep``."""
    if not args.keep:
        raise SystemExit("--all-slices saves the model: give --keep DIR")
    path = args.keep / f"em_{args.name or args.config}_all.skunet"
    if path.exists():  # before the training, not after it
        raise SystemExit(f"--all-slices would overwrite {path}; choose another --name")
    seg = configured(args)
    slices = np.arange(len(X))
    held = [] if args.no_calibration else calibration_slices(slices, args.calibration_slices)
    with_time_limit(seg, args.minutes)
    seconds = fit_seconds(seg, X, y, [i for i in slices if i not in held])
    if held:
        seg.calibrate_instances([X[i] for i in held], [y[i] for i in held])
    args.keep.mkdir(parents=True, exist_ok=True)
    seg.save(path)
    print(
        f"trained on {len(X) - len(held)} slices in {seconds:.0f} s ({len(seg.history)} "
        f"epochs), cells calibrated on slices {held}: {seg.instance_params_}; saved {path}"
    )
    return path


def save_picture(path: Path, title: str, image, truth, cells) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from skunet.instances import cell_instances

    pred = cell_instances((cells > 0.5).astype(np.uint8))
    true = cell_instances(truth)
    # predicted cells that cover more than one true cell: merges, in red
    merged = np.zeros_like(pred, bool)
    for label in np.unique(pred[pred > 0]):
        inside = true[(pred == label) & (true > 0)]
        if np.unique(inside).size > 1:
            merged |= pred == label
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.3))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("image")
    axes[1].imshow(truth, cmap="gray")
    axes[1].set_title("truth (1 = cell)")
    overlay = np.dstack([cells] * 3)
    overlay[merged] = overlay[merged] * 0.4 + np.array([0.6, 0, 0])
    overlay[find_boundaries(pred)] = (0, 0.6, 1)
    axes[2].imshow(overlay)
    axes[2].set_title("cell probability; merged cells red, cell borders blue")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)  # beside a results file not yet written
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _cell(s: dict, key: str) -> str:
    if key not in s:
        return "—"
    return f"{s[key]['mean']:.4f} ({s[key]['min']:.4f}-{s[key]['max']:.4f})"


def table(results: dict) -> str:
    lines = [
        "| configuration | V_rand (protocol) | V_info (protocol) | V_rand @0.5 | V_info @0.5 "
        "| V_rand, cells (predict_instances) | pixel error @0.5 | pixel error, best t "
        "| training per fold | device |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, rec in results.items():
        if "fit_seconds" not in rec.get("summary", {}):  # decoder and calibration trials
            continue
        s = rec["summary"]
        # records made before the protocol existed hold the 0.5 figures under v_rand / v_info
        old = "v_rand_05" not in s
        cells = [
            "—" if old else _cell(s, "v_rand"),
            "—" if old else _cell(s, "v_info"),
            _cell(s, "v_rand" if old else "v_rand_05"),
            _cell(s, "v_info" if old else "v_info_05"),
            _cell(s, "v_rand_instances"),
            _cell(s, "pixel_error"),
            _cell(s, "pixel_error_best"),
        ]
        minutes = s["fit_seconds"]
        ran = sorted({f.get("epochs_run", rec["max_epochs"]) for f in rec["folds"]})
        epochs = f"{rec['max_epochs']} epochs"
        if ran != [rec["max_epochs"]]:  # a time limit, early stopping or a NaN stopped it
            epochs = f"{ran[0]}-{ran[-1]} of {epochs}" if len(ran) > 1 else f"{ran[0]} of {epochs}"
        lines.append(
            f"| {config} ({rec['recipe']}, {epochs}) | {' | '.join(cells)} "
            f"| {minutes['mean'] / 60:.1f} min | {device_of(rec)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--folds", type=int, nargs="+", help="run only these folds (0-4)")
    add_trial_arguments(parser, "the configuration's name")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="train_split=None recipes: train on every training slice, keep the defaults",
    )
    parser.add_argument(
        "--calibration-slices",
        type=int,
        default=5,
        help="train_split=None recipes: calibrate on this many training slices, spread "
        "through the stack and held out of the training (default 5; on one slice, and "
        "less on three, the choice overfits them)",
    )
    parser.add_argument("--keep", type=Path, help="save each fold's fitted model in this folder")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="load a fold's model from --keep instead of training it, when it is there "
        "(saved with the same configuration and --calibration-slices); calibrate and score",
    )
    parser.add_argument(
        "--all-slices",
        action="store_true",
        help="train the configuration once on all 30 slices (less --calibration-slices, "
        "spread through the stack, which calibrate its cells), save it in --keep as "
        "em_NAME_all.skunet and exit: the model to ship; nothing is scored",
    )
    add_common_arguments(parser, DEFAULT_DATA, RESULTS_FILE)
    args = parser.parse_args()
    if args.table:
        print(table(load(args.out)))
        return
    X, y = load_isbi2012(args.data)
    if args.all_slices:
        train_on_all(args, X, y)
        return
    folds, worst = [], None
    for k, (train, test) in enumerate(KFold(5).split(X)):  # consecutive slices
        if args.folds is not None and k not in args.folds:
            continue
        fold, slice_ = run_fold(args, X, y, k, train, test)
        folds.append({"fold": k, **fold})
        if worst is None or slice_[-1] < worst[-1]:
            worst = slice_
        print(
            f"{args.config} fold {k}: V_rand {fold['v_rand']:.4f} (t={fold['v_rand_threshold']}),"
            f" V_info {fold['v_info']:.4f}, @0.5 {fold['v_rand_05']:.4f} / "
            f"{fold['v_info_05']:.4f}, pixel error {fold['pixel_error']:.4f}, "
            f"{fold['fit_seconds']:.0f} s; cells of predict_instances V_rand "
            f"{fold['v_rand_instances']:.4f} / V_info {fold['v_info_instances']:.4f} "
            f"({fold['instance_params']}; defaults {fold['v_rand_instances_defaults']:.4f}); "
            + ", ".join(
                f"{name} {v['v_rand']:.4f} (t={v['v_rand_threshold']}) / {v['pixel_error']:.4f}"
                for name, v in fold["variants"].items()
            ),
            flush=True,
        )
    recipe = CONFIGS[args.config][0]
    summary = {k: spread(f[k] for f in folds) for k in (*SCORES, "fit_seconds") if k in folds[0]}
    name = args.name or args.config
    key = name if args.folds is None else f"{name}, folds {sorted(args.folds)}"
    picture = args.out.parent / f"em_{re.sub(r'[^A-Za-z0-9]+', '_', key).strip('_')}_worst.png"
    index, image, truth, cells, v = worst
    save_picture(picture, f"{key}: slice {index}, V_rand at 0.5 {v:.3f}", image, truth, cells)
    figures = {
        "recipe": recipe,
        "max_epochs": configured(args).max_epochs,
        "settings": args.set,
        "complete_cv": args.folds is None,
        "picture": picture.name,
        "summary": summary,
        "folds": folds,
    }
    results = update(args.out, key, figures)
    print(f"\n{table(results)}\n\nwritten: {args.out}, {picture}")


if __name__ == "__main__":
    main()
