"""Dice of the blood-cell presets in 5-fold cross-validation on the WBC images.

    python benchmarks/wbc.py                  # the "fast" preset and the lab's recipe
    python benchmarks/wbc.py --recipes fast   # one of them
    python benchmarks/wbc.py --folds 0        # a quick look: recorded as "fast, folds [0]"
    python benchmarks/wbc.py --table          # the README table from the results file

Splits ``shared/data/wbc`` (240 RGB images, 88-120 px) into 5 folds by image (shuffled,
seed 0). For each fold it trains ``skunet.presets.blood_cell_segmenter(recipe)`` on the
other four and scores the held-out fold at each image's own size: Dice and IoU per class
(background, cytoplasm, nucleus) and whole-cell Dice (cytoplasm and nucleus merged), all
pooled over the fold's pixels, plus the training wall time; under "plain", nucleus and
whole-cell Dice of the same network without the recipe's ``tta`` and ``postprocess``.
Each recipe's record (command, date, machine) is kept under its own key in
``benchmarks/results/wbc.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _record import (
    RESULTS,
    add_common_arguments,
    device_of,
    fit_seconds,
    load,
    spread,
    update,
)
from sklearn.model_selection import KFold

from skunet.datasets import load_wbc
from skunet.metrics import dice_score, iou_score, whole_dice_score
from skunet.presets import RECIPES, blood_cell_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wbc"
RESULTS_FILE = RESULTS / "wbc.json"
CLASSES = ("background", "cytoplasm", "nucleus")


def run_fold(recipe: str, args: argparse.Namespace, X, y, train, test) -> dict:
    params = {"device": args.device, "random_state": 0, "verbose": 0}
    if args.epochs:
        params["max_epochs"] = args.epochs
    seg = blood_cell_segmenter(recipe, **params)
    seconds = fit_seconds(seg, X, y, train)
    truth = [y[i] for i in test]
    pred = list(seg.predict([X[i] for i in test]))
    assert all(p.shape == t.shape for p, t in zip(pred, truth))  # each image at its own size
    dice = dice_score(truth, pred, n_classes=3, average=None)
    iou = iou_score(truth, pred, n_classes=3, average=None)
    # the same network without the recipe's flip averaging and one-cell clean-up
    plain = list(seg.set_params(tta=False, postprocess=None).predict([X[i] for i in test]))
    return {
        "dice": dict(zip(CLASSES, dice.tolist())),
        "iou": dict(zip(CLASSES, iou.tolist())),
        "whole_cell_dice": whole_dice_score(truth, pred),
        "plain": {
            "nucleus_dice": float(dice_score(truth, plain, n_classes=3, average=None)[2]),
            "whole_cell_dice": whole_dice_score(truth, plain),
        },
        "fit_seconds": seconds,
        "epochs_run": len(seg.history),
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
        "--recipes", nargs="+", choices=sorted(RECIPES["blood_cells"]), default=["fast", "lab"]
    )
    add_common_arguments(parser, DEFAULT_DATA, RESULTS_FILE)
    parser.add_argument("--folds", type=int, nargs="+", help="run only these folds (0-4)")
    args = parser.parse_args()
    if args.table:
        print(table(load(args.out)))
        return
    X, y = load_wbc(args.data)
    splits = list(KFold(5, shuffle=True, random_state=0).split(np.arange(len(X))))
    results = {}
    for recipe in args.recipes:
        folds = []
        for k, (train, test) in enumerate(splits):
            if args.folds is not None and k not in args.folds:
                continue
            fold = run_fold(recipe, args, X, y, train, test)
            folds.append({"fold": k, **fold})
            print(
                f"{recipe} fold {k}: nucleus Dice {fold['dice']['nucleus']:.4f}, whole-cell "
                f"Dice {fold['whole_cell_dice']:.4f}, {fold['fit_seconds']:.0f} s",
                flush=True,
            )
        epochs = args.epochs or RECIPES["blood_cells"][recipe]["max_epochs"]
        figures = {
            "max_epochs": epochs,
            "complete_cv": args.folds is None,
            "summary": summarise(folds),
            "folds": folds,
        }
        # a partial cross-validation is kept apart from the complete one
        key = recipe if args.folds is None else f"{recipe}, folds {sorted(args.folds)}"
        results = update(args.out, key, figures)
    if results:
        print(f"\n{table(results)}\n\nwritten: {args.out}")


if __name__ == "__main__":
    main()
