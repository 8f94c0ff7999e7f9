"""Instance decoders compared on one trained nuclei model, without training again.

    python benchmarks/nuclei.py --config cpu --variants distance --save models
    python benchmarks/nuclei_decoders.py models/cpu-distance.skunet

Predicts the held-out images of ``benchmarks/nuclei.py`` and the model's own validation
images (the same ``ValidSplit`` of the training images) once with and once without
test-time flips, then for each decoder chooses its threshold and split on the validation
images (:func:`skunet.calibration.calibrate_instances`) and scores the held-out images
with them: what the model would score had it been trained with that decoder as default.
The figures go to ``benchmarks/results/nuclei_trials.json`` under ``--name``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from pathlib import Path

from _record import update
from nuclei import DEFAULT_DATA, object_scores, split

from skunet import UNetSegmenter
from skunet.calibration import calibrate_instances
from skunet.datasets import load_dsb2018
from skunet.instances import distance_instances
from skunet.intake.sampling import ImageSet

RESULTS_FILE = Path(__file__).parent / "results" / "nuclei_trials.json"


class Decoded:
    """A predictor's probabilities, decoded by ``decode`` instead of its own rule."""

    def __init__(self, predictor, probabilities, decode=None):
        self.predictor, self.fixed, self.decode = predictor, probabilities, decode
        self.membranes, self.n_classes, self.target = False, predictor.n_classes, predictor.target

    def check_instances(self):
        self.predictor.check_instances()

    def probabilities(self, images):
        return self.fixed

    def instances(self, p, threshold=None, split="auto"):
        if self.decode is None:
            return self.predictor.instances(p, threshold, split)
        # the uncalibrated defaults of the model's target (its record's split)
        settings = dataclasses.replace(
            self.predictor, instance_threshold=0.5, instance_split="auto"
        ).instance_settings(threshold, split)
        return self.decode(p, settings["threshold"], settings["split"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--sigmas", type=float, nargs="*", default=[0.0, 2.0], help="distance models' smoothing"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    parser.add_argument("--name", help="the record's key (default: the model file's name)")
    args = parser.parse_args()
    seg = UNetSegmenter.load(args.model)
    X, y = load_dsb2018(args.data, progress=False)
    test, train = split(len(X))
    _, valid = seg.train_split(ImageSet([X[i] for i in train]))
    valid = [train[i] for i in valid.indices]
    decoders = {"own": None}
    if seg.target == "distance":
        decoders |= {f"sigma {s:g} px": partial(distance_instances, sigma=s) for s in args.sigmas}
    rows = {}
    for tta in (False, True):
        seg.set_params(tta=tta)
        predictor = seg.predictor_
        start = time.perf_counter()
        held_out = predictor.probabilities(predictor.check_images([X[i] for i in test]))
        seconds = time.perf_counter() - start
        validation = predictor.probabilities(predictor.check_images([X[i] for i in valid]))
        for name, decode in decoders.items():
            chosen = calibrate_instances(
                Decoded(predictor, validation, decode), [None] * len(valid), [y[i] for i in valid]
            )
            decoder = Decoded(predictor, held_out, decode)
            pred = [decoder.instances(p, chosen.threshold, chosen.split) for p in held_out]
            scores = object_scores([y[i] for i in test], pred)
            key = f"{name}{', TTA' if tta else ''}"
            rows[key] = {
                **scores,
                "chosen": chosen.params,
                "validation_mean_ap": chosen.score,
                "predict_seconds": round(seconds, 1),
            }
            print(
                f"{key:24} AP@0.5 {scores['ap']['0.50']:.3f}  AP@0.75 {scores['ap']['0.75']:.3f}"
                f"  AP@0.9 {scores['ap']['0.90']:.3f}  precision {scores['precision_50']:.3f}"
                f"  recall {scores['recall_50']:.3f}  chosen {chosen.params}  "
                f"(validation mean AP {chosen.score:.3f})",
                flush=True,
            )
    update(args.out, args.name or f"decoders of {args.model.name}", {"decoders": rows})


if __name__ == "__main__":
    main()
