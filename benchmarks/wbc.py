"""Dice of the blood-cell presets in 5-fold cross-validation on the WBC images.

    python benchmarks/wbc.py                  # the "fast" preset and the lab's recipe
    python benchmarks/wbc.py --recipes fast   # one of them
    python benchmarks/wbc.py --folds 0        # a quick look: recorded as "fast, folds [0]"
    python benchmarks/wbc.py --table          # the docs table from the results file

Splits ``shared/data/wbc`` (240 RGB images, 88-120 px) into 5 folds by image (shuffled,
seed 0). For each fold it trains ``skunet.presets.blood_cell_segmenter(recipe)`` on the
other four and scores the held-out fold at each image's own size: Dice and IoU per class
(background, cytoplasm, nucleus) and whole-cell Dice (cytoplasm and nucleus merged), all
pooled over the fold's pixels, plus the training wall time; under "plain", nucleus and
whole-cell Dice of the same network without the recipe's ``tta`` and ``postprocess``,
and under "variants" the same for each combination of flip TTA and the one-cell clean-up
(``skunet.instances.largest_object``), so one training run measures all four. Each
recipe's record (command, date, machine) is kept under its own key in
``benchmarks/results/wbc.json``.

Trials of a recipe's parameters, for ranking ideas on a proxy (one fold, fixed seed):

    python benchmarks/wbc.py --recipes fast --folds 0 --name width8 \
        --set module__base_channels=8 --set max_epochs=120 \
        --out benchmarks/results/wbc_trials.json

``--set`` takes ``param=expression``; the expression may name torch, skunet's losses,
callbacks and post-processing (``criterion=SoftDiceLoss``,
``callbacks__lr_scheduler=OneCycleLRScheduler()``, ``autocast='auto'``).
``--pictures`` saves each fold's six worst held-out images next to the results.

The one-cell clean-up's options, on the same networks (no retraining):

    python benchmarks/wbc.py --recipes fast --keep /tmp/wbc    # the CV, keeping predictions
    python benchmarks/wbc.py --recipes fast --study-postprocess /tmp/wbc
"""

from __future__ import annotations

import argparse
import pickle
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

from skunet.datasets import load_wbc
from skunet.instances import LargestObject, largest_object
from skunet.metrics import dice_score, iou_score, whole_dice_score
from skunet.presets import blood_cell_segmenter
from skunet.tasks import TASKS

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wbc"
RESULTS_FILE = RESULTS / "wbc.json"
CLASSES = TASKS["blood-cells"].class_names
# each combination of flip averaging and the clean-up: (tta, cleaned up)
VARIANTS = {
    "raw": (False, False),
    "postprocess": (False, True),
    "tta": (True, False),
    "tta+postprocess": (True, True),
}


def variants(clean_up) -> dict[str, dict]:
    """The prediction settings of each variant, to measure on one network."""
    return {
        name: {"tta": tta, "postprocess": clean_up if cleaned else None}
        for name, (tta, cleaned) in VARIANTS.items()
    }


def nucleus_and_whole(truth: list, pred: list) -> dict:
    """Nucleus Dice and whole-cell Dice, pooled over the images."""
    return {
        "nucleus_dice": float(dice_score(truth, pred, n_classes=3, average=None)[2]),
        "whole_cell_dice": whole_dice_score(truth, pred),
    }


def save_worst(path: Path, title: str, images: list, truth: list, raw: list, best: list) -> None:
    """The six held-out images with the lowest whole-cell Dice (raw): image, truth, raw
    prediction, prediction with TTA and the one-cell clean-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [whole_dice_score([t], [r]) for t, r in zip(truth, raw)]
    worst = np.argsort(scores)[:6]
    fig, axes = plt.subplots(len(worst), 4, figsize=(8, 2 * len(worst)), squeeze=False)
    for row, i in zip(axes, worst):
        row[0].imshow(images[i])
        row[0].set_title(f"image, raw whole {scores[i]:.3f}", fontsize=7)
        masks = {"truth": truth[i], "raw": raw[i], "tta+post": best[i]}
        for ax, (name, mask) in zip(row[1:], masks.items()):
            ax.imshow(mask, vmin=0, vmax=2, cmap="viridis", interpolation="nearest")
            ax.set_title(name, fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def configured(recipe: str, args: argparse.Namespace):
    """The recipe's segmenter with the command line's settings, unfitted."""
    params = {"device": args.device, "random_state": 0, "verbose": args.verbose}
    if args.epochs:
        params["max_epochs"] = args.epochs
    seg = blood_cell_segmenter(recipe, **{**params, **parse_settings(args.set)})
    return with_time_limit(seg, args.minutes)


def run_fold(recipe: str, args: argparse.Namespace, X, y, train, test, k: int) -> dict:
    seg = configured(recipe, args)
    seconds = fit_seconds(seg, X, y, train)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        seg.save(args.save / f"wbc_{args.name or recipe}_fold{k}.skunet", overwrite=True)
    truth = [y[i] for i in test]
    images = [X[i] for i in test]
    # one prediction per combination of TTA and clean-up; the recipe's own is one of them
    settings = variants(seg.postprocess or largest_object)
    own = next(n for n, v in VARIANTS.items() if v == (bool(seg.tta), seg.postprocess is not None))
    outputs = {}
    for name, setting in settings.items():
        outputs[name] = list(seg.set_params(**setting).predict(images))
    seg.set_params(**settings[own])  # as the recipe had it
    pred = outputs[own]
    assert all(p.shape == t.shape for p, t in zip(pred, truth))  # each image at its own size
    dice = dice_score(truth, pred, n_classes=3, average=None)
    iou = iou_score(truth, pred, n_classes=3, average=None)
    scores = {name: nucleus_and_whole(truth, out) for name, out in outputs.items()}
    if args.keep:  # the flip-averaged class maps before any clean-up, to study it offline
        args.keep.mkdir(parents=True, exist_ok=True)
        with open(args.keep / f"{args.name or recipe}_fold{k}.pkl", "wb") as f:
            pickle.dump({"test": test, "truth": truth, "tta": outputs["tta"]}, f)
    if args.pictures:
        name = f"wbc_{args.name or recipe}_fold{k}_worst.png"
        save_worst(
            args.out.parent / name,
            name[:-4],
            images,
            truth,
            outputs["raw"],
            outputs["tta+postprocess"],
        )
    return {
        "dice": dict(zip(CLASSES, dice.tolist())),
        "iou": dict(zip(CLASSES, iou.tolist())),
        "whole_cell_dice": whole_dice_score(truth, pred),
        # the same network without the recipe's flip averaging and one-cell clean-up
        "plain": scores["raw"],
        "variants": scores,
        "fit_seconds": seconds,
        "epochs_run": len(seg.history),
    }


def study_postprocess(folder: Path, name: str, radii=(0, 1, 2, 3, 4)) -> dict:
    """Nucleus and whole-cell Dice of the kept TTA class maps (``--keep``) with no
    clean-up and with ``LargestObject(opening_radius=r)``, per fold and mean: the same
    networks, so only the post-processing differs."""
    options = {"none": None, **{f"largest, opening {r}": LargestObject(r) for r in radii}}
    rows: dict[str, list] = {option: [] for option in options}
    folds = sorted(folder.glob(f"{name}_fold*.pkl"))
    if not folds:
        raise SystemExit(f"no kept predictions {name}_fold*.pkl in {folder}")
    for path in folds:
        with open(path, "rb") as f:
            kept = pickle.load(f)
        for option, post in options.items():
            pred = kept["tta"] if post is None else [post(m) for m in kept["tta"]]
            rows[option].append(nucleus_and_whole(kept["truth"], pred))
    return {
        "folds": [p.stem.rsplit("_fold", 1)[1] for p in folds],
        "options": {
            option: {
                figure: spread(r[figure] for r in results)
                for figure in ("nucleus_dice", "whole_cell_dice")
            }
            for option, results in rows.items()
        },
    }


def summarise(folds: list[dict]) -> dict:
    return {
        "nucleus_dice": spread(f["dice"]["nucleus"] for f in folds),
        "cytoplasm_dice": spread(f["dice"]["cytoplasm"] for f in folds),
        "whole_cell_dice": spread(f["whole_cell_dice"] for f in folds),
        "nucleus_iou": spread(f["iou"]["nucleus"] for f in folds),
        "plain_nucleus_dice": spread(f["plain"]["nucleus_dice"] for f in folds),
        "plain_whole_cell_dice": spread(f["plain"]["whole_cell_dice"] for f in folds),
        "fit_seconds": spread(f["fit_seconds"] for f in folds),
        "variants": {
            name: {
                figure: spread(f["variants"][name][figure] for f in folds)
                for figure in ("nucleus_dice", "whole_cell_dice")
            }
            for name in VARIANTS
        },
    }


def table(results: dict) -> str:
    lines = [
        "| recipe | nucleus Dice | cytoplasm Dice | whole-cell Dice | nucleus IoU "
        "| training per fold | device |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(s, digits=4):
        return f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"

    for recipe, rec in results.items():
        if "summary" not in rec:  # a post-processing study: printed by its own command
            continue
        s = rec["summary"]
        device = device_of(rec)
        minutes = s["fit_seconds"]
        lines.append(
            f"| {recipe} ({rec['max_epochs']} epochs) | {cell(s['nucleus_dice'])} "
            f"| {cell(s['cytoplasm_dice'])} | {cell(s['whole_cell_dice'])} "
            f"| {cell(s['nucleus_iou'])} | {minutes['mean'] / 60:.1f} min "
            f"(max {minutes['max'] / 60:.1f}) | {device} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes",
        nargs="+",
        choices=sorted(TASKS["blood-cells"].recipes),
        default=["fast", "lab"],
    )
    add_common_arguments(parser, DEFAULT_DATA, RESULTS_FILE)
    parser.add_argument("--folds", type=int, nargs="+", help="run only these folds (0-4)")
    add_trial_arguments(parser, "the recipe's name")
    parser.add_argument("--keep", type=Path, help="save the held-out TTA class maps here")
    parser.add_argument(
        "--study-postprocess",
        type=Path,
        metavar="DIR",
        help="score the clean-up options on predictions kept with --keep DIR, and exit",
    )
    parser.add_argument(
        "--pictures", action="store_true", help="save each fold's six worst held-out images"
    )
    parser.add_argument("--save", type=Path, help="save each fold's network in this folder")
    parser.add_argument(
        "--all-images",
        action="store_true",
        help="train each recipe once on all the images, save it in --save as "
        "wbc_NAME_all.skunet and exit: the model to ship; nothing is scored",
    )
    args = parser.parse_args()
    if args.table:
        print(table(load(args.out)))
        return
    if args.all_images:
        if not args.save:
            raise SystemExit("--all-images saves the model: give --save DIR")
        paths = {r: args.save / f"wbc_{args.name or r}_all.skunet" for r in args.recipes}
        taken = [str(path) for path in paths.values() if path.exists()]
        if taken:  # before the training, not after it
            raise SystemExit(f"--save would overwrite {', '.join(taken)}; choose another --name")
        X, y = load_wbc(args.data)
        for recipe, path in paths.items():
            seg = configured(recipe, args)
            seconds = fit_seconds(seg, X, y, np.arange(len(X)))
            args.save.mkdir(parents=True, exist_ok=True)
            seg.save(path)
            print(f"{recipe}: {len(X)} images, {seconds:.0f} s, {len(seg.history)} epochs: {path}")
        return
    if args.study_postprocess:
        for recipe in args.recipes:
            name = args.name or recipe
            study = study_postprocess(args.study_postprocess, name)
            update(args.out, f"{name}, post-processing of its TTA predictions", study)
            for option, s in study["options"].items():
                print(
                    f"{name} {option}: nucleus {s['nucleus_dice']['mean']:.4f}, "
                    f"whole cell {s['whole_cell_dice']['mean']:.4f}"
                )
        return
    X, y = load_wbc(args.data)
    splits = list(KFold(5, shuffle=True, random_state=0).split(np.arange(len(X))))
    results = {}
    for recipe in args.recipes:
        folds = []
        for k, (train, test) in enumerate(splits):
            if args.folds is not None and k not in args.folds:
                continue
            fold = run_fold(recipe, args, X, y, train, test, k)
            folds.append({"fold": k, **fold})
            print(
                f"{recipe} fold {k}: nucleus Dice {fold['dice']['nucleus']:.4f}, whole-cell "
                f"Dice {fold['whole_cell_dice']:.4f}, {fold['fit_seconds']:.0f} s, "
                f"{fold['epochs_run']} epochs; "
                + ", ".join(
                    f"{name} {v['nucleus_dice']:.4f} / {v['whole_cell_dice']:.4f}"
                    for name, v in fold["variants"].items()
                ),
                flush=True,
            )
        settings = parse_settings(args.set)
        epochs = settings.get("max_epochs") or args.epochs
        epochs = epochs or TASKS["blood-cells"].recipes[recipe]["max_epochs"]
        figures = {
            "max_epochs": epochs,
            "settings": args.set,
            "complete_cv": args.folds is None,
            "summary": summarise(folds),
            "folds": folds,
        }
        # a partial cross-validation is kept apart from the complete one
        name = args.name or recipe
        key = name if args.folds is None else f"{name}, folds {sorted(args.folds)}"
        results = update(args.out, key, figures)
    if results:
        print(f"\n{table(results)}\n\nwritten: {args.out}")


if __name__ == "__main__":
    main()
