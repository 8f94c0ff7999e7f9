"""EM cells: the decoders of a trained fold's cell probabilities, by the challenge's V_rand.

    python benchmarks/em.py --config cpu --folds 3 --keep /tmp/runs/em
    python benchmarks/em_decoders.py /tmp/runs/em/em_cpu_fold3.skunet --fold 3

Predicts the fold's test slices once (the model's own ``tta``) and scores the cells of
connected components at several thresholds and of
:func:`skunet.instances.membrane_instances` at several seed thresholds and splits (the
strength of a border that keeps two cells apart; V_rand, V_info, cells
per slice), and the pixel error of the membranes as predicted and thinned after the
threshold (membranes eroded by 1 or 2 pixels; skeletonised, the most a thinning can do);
records them in ``benchmarks/results/em_trials.json`` (``--pixel-error-only``: the
thinnings alone; ``--post-processing``: the protocol's scores of the cell probability
post-processed around the borders of the model's own cells, see :func:`post_processed`).

How the calibration on the held-out slices chooses among thresholds and splits is
``em_decoder_grid.py``'s (every pair of a finer grid, per slice, on all five folds; its
``--grid`` here, until 2026-12-02, calibrated one fold over a grid of thresholds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _record import update
from em import DEFAULT_DATA, scores
from scipy import ndimage as ndi
from skimage.morphology import reconstruction, skeletonize
from skimage.segmentation import find_boundaries
from sklearn.model_selection import KFold

from skunet import UNetSegmenter
from skunet.datasets import load_isbi2012
from skunet.instances import label_components, membrane_instances
from skunet.metrics import rand_scores
from skunet.metrics.rand import pixel_error

RESULTS_FILE = Path(__file__).parent / "results" / "em_trials.json"


def pixel_error_trials(truth: list, cells: list) -> dict[str, dict[float, float]]:
    """Mean pixel error per threshold of the membranes ``cells <= t`` as they are, eroded
    by 1 and 2 pixels (a 3x3 square), and skeletonised."""
    thinnings = {
        "as predicted": lambda m: m,
        "eroded 1 px": lambda m: ndi.binary_erosion(m, np.ones((3, 3)), border_value=1),
        "eroded 2 px": lambda m: ndi.binary_erosion(m, np.ones((3, 3)), 2, border_value=1),
        "skeleton": skeletonize,
    }
    return {
        name: {
            t: float(np.mean([pixel_error(y, ~thin(c <= t)) for y, c in zip(truth, cells)]))
            for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
        }
        for name, thin in thinnings.items()
    }


def post_processed(cells: np.ndarray, instances: np.ndarray) -> dict[str, np.ndarray]:
    """A slice's cell probability post-processed for the pixel error: ``band d px``, set to
    1 farther than ``d`` px from the borders of the decoded cells ``instances`` (a dark
    inside no longer reads as membrane); ``connected``, the membranes ``cells <= t``
    kept, at every threshold ``t``, where they connect to those borders (a grey
    reconstruction: thick membranes stay whole, dark blobs inside cells go); ``dilated``,
    the 3x3 maximum (the membranes eroded by one pixel at every threshold); the
    combinations; and ``band 2 px, c**0.2 farther``, the map as is near the borders and
    ``cells ** 0.2`` farther, where a threshold ``t`` then reads as ``t ** 5`` (0.7: 0.17):
    a high threshold keeps the gaps between cells, a low one the cells' insides."""
    borders = find_boundaries(instances)
    distance = ndi.distance_transform_edt(~borders)
    membrane = 1.0 - cells
    connected = 1.0 - reconstruction(np.where(borders, membrane, 0.0), membrane)
    band = {f"band {d:g} px": np.where(distance > d, 1.0, cells) for d in (1.5, 2, 3)}
    dilate = lambda c: ndi.maximum_filter(c, size=3)  # noqa: E731
    return {
        "as predicted": cells,
        **band,
        "dilated": dilate(cells),
        **{f"{name}, dilated": dilate(c) for name, c in band.items()},
        "dilated, band 2 px": np.where(distance > 2, 1.0, dilate(cells)),
        "connected": connected,
        "connected, dilated": dilate(connected),
        "band 2 px, c**0.2 farther": np.where(distance > 2, cells**0.2, cells),
    }


def post_processing_trials(seg: UNetSegmenter, truth: list, probabilities: list) -> dict:
    """em.py's scores (the protocol's V_rand, the pixel error at its threshold and at its
    best) of each :func:`post_processed` map of the test slices."""
    maps = [post_processed(p[1], seg.predictor_.instances(p)) for p in probabilities]
    rows = {}
    for name in maps[0]:
        rows[name] = r = scores(truth, [m[name] for m in maps])
        # the pixel error at V_rand's threshold, split: membrane inside true cells, and missed
        t = r["v_rand_threshold"]
        r["false_membrane"] = float(
            np.mean([((m[name] <= t) & (y > 0)).mean() for m, y in zip(maps, truth)])
        )
        r["missed_membrane"] = float(
            np.mean([((m[name] > t) & (y == 0)).mean() for m, y in zip(maps, truth)])
        )
        print(f"{name:26} V_rand {r['v_rand']:.4f} (t={r['v_rand_threshold']})  pixel error "
              f"there {r['pixel_error_at_v_rand_threshold']:.4f}, best "
              f"{r['pixel_error_best']:.4f} (t={r['pixel_error_threshold']}); false membrane "
              f"{r['false_membrane']:.4f}, missed {r['missed_membrane']:.4f}")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a fold's model (em.py --keep)")
    parser.add_argument("--fold", type=int, required=True, help="the fold it was trained for")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    parser.add_argument("--splits", type=float, nargs="+", default=[0.75, 0.85, 0.95])
    parser.add_argument(
        "--seeds", type=float, nargs="+", default=[0.5, 0.9], help="the split decoders' thresholds"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    parser.add_argument(
        "--pixel-error-only", action="store_true", help="only the thinnings' pixel errors"
    )
    parser.add_argument(
        "--post-processing", action="store_true", help="only the post-processed maps' scores"
    )
    args = parser.parse_args()
    X, y = load_isbi2012(args.data)
    _, test = list(KFold(5).split(X))[args.fold]
    seg = UNetSegmenter.load(args.model)
    probabilities = seg.predict_proba([X[i] for i in test])
    cells = [p[1] for p in probabilities]
    truth = [y[i] for i in test]
    if args.post_processing:
        key = f"post-processings of {args.model.name}, fold {args.fold}"
        rows = post_processing_trials(seg, truth, probabilities)
        update(args.out, key, {"model": str(args.model), "fold": args.fold, "maps": rows})
        print(f"written: {args.out} ({key})")
        return
    decoders = {f"components, t={t:g}": (label_components, t, None) for t in args.thresholds}
    decoders |= {
        f"membrane_instances, t={t:g}, split {s:g}": (membrane_instances, t, s)
        for t in args.seeds
        for s in args.splits
    }
    if args.pixel_error_only:
        decoders = {}
    rows = {}
    for name, (decode, t, s) in decoders.items():
        labels = [decode(c, t) if s is None else decode(c, t, s) for c in cells]
        scores = rand_scores(truth, labels)
        rows[name] = {
            "v_rand": scores.v_rand,
            "v_info": scores.v_info,
            "cells_per_slice": float(np.mean([lab.max() for lab in labels])),
        }
        print(f"{name:40} V_rand {scores.v_rand:.4f}  V_info {scores.v_info:.4f}  "
              f"{rows[name]['cells_per_slice']:.0f} cells per slice")  # fmt: skip
    thinned = pixel_error_trials(truth, cells)
    for name, errors in thinned.items():
        best = min(errors, key=errors.get)
        print(f"pixel error, membranes {name:12} best {errors[best]:.4f} (t={best}); "
              + ", ".join(f"t={t}: {e:.4f}" for t, e in errors.items()))  # fmt: skip
    what = "thinnings" if args.pixel_error_only else "decoders"
    key = f"{what} of {args.model.name}, fold {args.fold}"
    figures = {"model": str(args.model), "fold": args.fold, "decoders": rows}
    update(args.out, key, {**figures, "pixel_error_thinned": thinned})
    print(f"written: {args.out} ({key})")


if __name__ == "__main__":
    main()
