"""Where to correct next: how well ``predict_uncertainty`` finds a model's errors.

    python benchmarks/uncertainty.py [--model nuclei@0.1.0] [--data ../shared/data/dsb2018]

A model is judged on the DSB2018 images its card says it never trained on
(``ModelCard.never_saw``): ``nuclei@0.1.0`` trained on the nuclei benchmark's split, so
the split's 73 held-out images are new to it. For every pixel, an error is a foreground
decision that disagrees with the truth; the figures are

- pixel level: the area under the ROC curve of the uncertainty as a detector of the
  errors, and the share of all errors within the 5 % and 10 % most uncertain pixels
  (pooled over the images);
- image level: the Spearman correlation between an image's mean uncertainty and its
  error (1 - AP@0.5 of its instances), and the mean AP@0.5 of the quarter of the images
  ranked most uncertain (``uncertainty_ranking``) against the rest.

Writes ``benchmarks/results/uncertainty.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _record import RESULTS, update
from nuclei import DEFAULT_DATA
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from skunet.datasets import load_dsb2018, paired_files
from skunet.evaluation import uncertainty_ranking
from skunet.metrics.matching import match_instances
from skunet.pretrained import load_model

RESULTS_FILE = RESULTS / "uncertainty.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei@0.1.0")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tta", action="store_true", help="average the flips")
    args = parser.parse_args()

    X, y = load_dsb2018(args.data, progress=False)
    root = Path(args.data) / "train"
    seg = load_model(args.model, tta=args.tta, verbose=0)
    unseen = seg.pretrained_.never_saw(list(paired_files(root / "images", root / "masks")))
    if not unseen:
        raise SystemExit(f"{args.model} trained on every image of {args.data}: nothing to judge")
    X, y = [X[i] for i in unseen], [y[i] for i in unseen]
    maps = list(seg.predict_uncertainty(X))
    labels = list(seg.predict_instances(X))
    errors = [(lab > 0) != (truth > 0) for lab, truth in zip(labels, y)]
    u = np.concatenate([m.ravel() for m in maps])
    e = np.concatenate([err.ravel() for err in errors])
    order = np.argsort(-u, kind="stable")
    found = {
        f"errors_in_top_{p}pct": round(float(e[order[: int(len(u) * p / 100)]].sum() / e.sum()), 4)
        for p in (5, 10)
    }
    ap = [match_instances(truth, lab, 0.5).accuracy for truth, lab in zip(y, labels)]
    ranking = uncertainty_ranking(seg, X)
    quarter = [i for i, _ in ranking[: len(ranking) // 4]]
    rest = [i for i, _ in ranking[len(ranking) // 4 :]]
    mean_u = [float(m.mean()) for m in maps]
    figures = {
        "model": seg.pretrained_.key,
        "images": len(X),
        "tta": args.tta,
        "error_pixel_fraction": round(float(e.mean()), 4),
        "pixel_auroc": round(float(roc_auc_score(e, u)), 4),
        **found,
        "image_spearman_uncertainty_vs_1_minus_ap50": round(
            float(spearmanr(mean_u, 1 - np.asarray(ap)).statistic), 4
        ),
        "ap50_most_uncertain_quarter": round(float(np.mean([ap[i] for i in quarter])), 4),
        "ap50_rest": round(float(np.mean([ap[i] for i in rest])), 4),
    }
    print(figures)
    update(RESULTS_FILE, f"{args.model}{' tta' if args.tta else ''}", figures)


if __name__ == "__main__":
    main()
