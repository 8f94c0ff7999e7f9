"""A model on images at a lower magnification than its own: ``scale=`` against none.

    python benchmarks/magnification.py 'runs/he/NAME-distance.skunet' --factors 2 1.5

The held-out tiles of ``he_nuclei.py``'s split (7 of the 45 H&E tiles at 40x, which the
split's models never trained on) shrunk by each factor, anti-aliased, as a scanner at
20x instead of 40x would give them (factor 2), and their labels resized to match
(nearest neighbour). The model predicts each as it is (``scale=1``) and with
``scale=factor`` (:mod:`skunet.prediction.rescale`); AJI, F1@0.5, AP@0.5 / 0.75 and PQ
against the shrunk labels, the tiles at full size for reference, and the prediction
seconds per megapixel of the shrunk tile. The model is a file (a split model that
``he_nuclei.py --save`` wrote) or a pretrained name; judge only a model that never
trained on those tiles. Records go to ``results/magnification.json`` under ``--name``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _record import RESULTS, update
from he_nuclei import DEFAULT_DATA, load_he
from nuclei import object_scores, per_megapixel, split
from skimage.transform import resize

from skunet.prediction.rescale import rescale_image
from skunet.pretrained import open_model

RESULTS_FILE = RESULTS / "magnification.json"


def shrink(image: np.ndarray, labels: np.ndarray, factor: float):
    """An ``(H, W, 3)`` tile and its labels at ``1 / factor`` of the magnification."""
    small = np.moveaxis(rescale_image(np.moveaxis(image, -1, 0), 1 / factor), 0, -1)
    truth = resize(labels, small.shape[:2], order=0, anti_aliasing=False, preserve_range=True)
    return small, truth.astype(np.int32)


def figures(seg, images: list, truth: list, scale: float) -> dict:
    started = time.perf_counter()
    pred = [seg.predict_instances([im], scale=scale)[0] for im in images]
    seconds = time.perf_counter() - started
    scores = object_scores(truth, pred)
    return {
        "aji": scores["aji"],
        "f1_50": scores["f1_50"],
        "ap_50": scores["ap"]["0.50"],
        "ap_75": scores["ap"]["0.75"],
        "panoptic_quality_50": scores["panoptic_quality_50"],
        "n_true": scores["n_true"],
        "n_pred": scores["n_pred"],
        "seconds_per_megapixel": per_megapixel(seconds, images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model file or a pretrained model's name")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="he_data.py's folder")
    parser.add_argument("--factors", type=float, nargs="+", default=[2.0])
    parser.add_argument("--name", help="the record's key (default: the model)")
    args = parser.parse_args()
    X, y = load_he(args.data)
    test, _ = split(len(X))
    seg = open_model(args.model)
    seg.set_params(verbose=0)
    images, truth = [X[i] for i in test], [y[i] for i in test]
    result = {"model": args.model, "held_out_images": len(test)}
    result["full size"] = figures(seg, images, truth, 1.0)
    print("full size", _short(result["full size"]), flush=True)
    for factor in args.factors:
        small = [shrink(im, t, factor) for im, t in zip(images, truth)]
        X_small, y_small = [s[0] for s in small], [s[1] for s in small]
        for scale in (1.0, factor):
            key = f"shrunk {factor:g}x, scale={scale:g}"
            result[key] = figures(seg, X_small, y_small, scale)
            print(key, _short(result[key]), flush=True)
    update(RESULTS_FILE, args.name or args.model, result)
    print(f"wrote {RESULTS_FILE}")


def _short(f: dict) -> str:
    keys = ("aji", "f1_50", "ap_50", "ap_75", "seconds_per_megapixel")
    return ", ".join(f"{k} {f[k]:.3f}" for k in keys)


if __name__ == "__main__":
    main()
