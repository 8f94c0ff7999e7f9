"""How well and how fast ``skunet demo`` trains, over several seeds.

    python benchmarks/demo.py [--seeds 0 1 2] [--epochs 30]

Writes ``benchmarks/results/demo.json`` and prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _record import write

from skunet.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as out:
            m = run_demo(out, epochs=args.epochs, seed=seed, verbose=0)
        runs.append({"seed": seed, **m})
        print(
            f"seed {seed}: held-out IoU {m['held_out_iou']:.3f} (pooled "
            f"{m['held_out_iou_pooled']:.3f}), {m['train_seconds']:.0f} s",
            flush=True,
        )
    ious = [r["held_out_iou"] for r in runs]
    secs = [r["train_seconds"] for r in runs]
    summary = {
        "held_out_iou_median": statistics.median(ious),
        "held_out_iou_min": min(ious),
        "held_out_iou_max": max(ious),
        "held_out_iou_pooled_median": statistics.median(r["held_out_iou_pooled"] for r in runs),
        "train_seconds_median": statistics.median(secs),
    }
    path = write("demo", {"epochs": args.epochs, "summary": summary, "runs": runs})
    print(
        f"\n| held-out IoU, mean over images (median, min-max of {len(runs)} seeds) "
        f"| pooled IoU (median) | training time (median) |"
    )
    print("|---|---|---|")
    iou_range = f"{summary['held_out_iou_median']:.3f} ({min(ious):.3f}-{max(ious):.3f})"
    pooled = f"{summary['held_out_iou_pooled_median']:.3f}"
    print(f"| {iou_range} | {pooled} | {summary['train_seconds_median']:.0f} s |")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
