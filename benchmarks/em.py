"""V_rand, V_info and pixel error of the EM preset in 5-fold cross-validation on ISBI 2012.

    python benchmarks/em.py --config cpu      # the "fast" recipe, sized for 2 CPU cores
    python benchmarks/em.py --config gpu      # the preset itself (the 2015 paper's recipe)
    python benchmarks/em.py --config cpu --folds 0   # recorded as "cpu, folds [0]"
    python benchmarks/em.py --table           # the README table from the results file

Splits the 30 labelled slices of ``shared/data/isbi2012`` into 5 folds of 6 consecutive
slices (neighbouring slices look alike, so they stay on one side). For each fold it
trains ``skunet.presets.em_segmenter`` with the configuration's recipe on the other 24
(the estimator holds out 20 % of them for early stopping and the checkpoint) and scores
the held-out slices with :func:`skunet.metrics.rand_scores` (foreground-restricted
V_rand and V_info as the challenge defines them, per slice, then the mean) and the pixel
error, plus the training wall time. Records go under the configuration's key in
``benchmarks/results/em.json`` with the command, date and machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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

from skunet.augment import Augment
from skunet.datasets import load_isbi2012
from skunet.metrics import rand_scores
from skunet.presets import em_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"
RESULTS_FILE = RESULTS / "em.json"

CONFIGS = {
    # the preset as it is: the paper's 64 base channels, SGD 0.99, batch 1 tiles
    "gpu": ("paper", {}),
    # what 2 CPU cores train in ~5 minutes per fold (24 epochs gave the same fold-0 model:
    # the checkpoint kept an epoch before the 12th)
    "cpu": ("fast", {"max_epochs": 12}),
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
SCORES = ("v_rand", "v_info", "pixel_error")


def run_fold(args: argparse.Namespace, X, y, train, test) -> dict:
    recipe, overrides = CONFIGS[args.config]
    params = {**overrides, "device": args.device, "random_state": 0, "verbose": args.verbose}
    if args.epochs:
        params["max_epochs"] = args.epochs
    seg = em_segmenter(recipe, **params)
    seconds = fit_seconds(seg, X, y, train)
    pred = seg.predict([X[i] for i in test])
    scores = rand_scores([y[i] for i in test], list(pred))
    return {
        **{name: getattr(scores, name) for name in scores._fields},
        "fit_seconds": seconds,
        "epochs_run": len(seg.history),
    }


def table(results: dict) -> str:
    lines = [
        "| configuration | V_rand | V_info | pixel error | training per fold | device |",
        "|---|---|---|---|---|---|",
    ]
    for config, rec in results.items():
        s = rec["summary"]
        cells = " | ".join(
            f"{s[k]['mean']:.4f} ({s[k]['min']:.4f}-{s[k]['max']:.4f})" for k in SCORES
        )
        minutes = s["fit_seconds"]
        lines.append(
            f"| {config} ({rec['recipe']}, {rec['max_epochs']} epochs) | {cells} "
            f"| {minutes['mean'] / 60:.1f} min | {device_of(rec)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--folds", type=int, nargs="+", help="run only these folds (0-4)")
    parser.add_argument("--verbose", type=int, default=0)
    add_common_arguments(parser, DEFAULT_DATA, RESULTS_FILE)
    args = parser.parse_args()
    if args.table:
        print(table(load(args.out)))
        return
    X, y = load_isbi2012(args.data)
    folds = []
    for k, (train, test) in enumerate(KFold(5).split(X)):  # consecutive slices
        if args.folds is not None and k not in args.folds:
            continue
        fold = run_fold(args, X, y, train, test)
        folds.append({"fold": k, **fold})
        print(
            f"{args.config} fold {k}: V_rand {fold['v_rand']:.4f}, V_info {fold['v_info']:.4f}"
            f", pixel error {fold['pixel_error']:.4f}, {fold['fit_seconds']:.0f} s",
            flush=True,
        )
    recipe, overrides = CONFIGS[args.config]
    summary = {k: spread(f[k] for f in folds) for k in (*SCORES, "fit_seconds")}
    figures = {
        "recipe": recipe,
        "max_epochs": args.epochs or overrides.get("max_epochs"),
        "complete_cv": args.folds is None,
        "summary": summary,
        "folds": folds,
    }
    key = args.config if args.folds is None else f"{args.config}, folds {sorted(args.folds)}"
    results = update(args.out, key, figures)
    print(f"\n{table(results)}\n\nwritten: {args.out}")


if __name__ == "__main__":
    main()
