"""Instance thresholds chosen on labelled images, as StarDist's ``optimize_thresholds`` does.

A 3-class (background / interior / boundary) model turns probabilities into objects with
a seeded watershed that has two settings: the probability ``threshold`` of the seeds and
the foreground, and the ``split`` height at which touching seeds are separated
(:func:`~skunet.instances.watershed_instances`); a distance model's ``split`` is the
distance level its seeds stand above (:func:`~skunet.instances.distance_instances`).
:func:`calibrate_instances` predicts the images once and decodes them with every pair
of a grid, scoring each by the mean of StarDist's AP (``tp / (tp + fp + fn)``, pooled
over the images) over IoU 0.5 ... 0.9; the defaults are always among the candidates,
and another pair is chosen only when it scores higher, so calibration never lowers the
score on the images it sees (membrane models: see below). Binary models have one
setting, ``threshold`` (connected components). EM membrane models (cells between membranes,
:func:`~skunet.instances.membrane_instances`) are scored by the ISBI challenge's
foreground-restricted V_rand (mean over the images) against their cells, with ``split``
the strength of a border (its mean membrane probability against the cells' insides)
below which two neighbouring cells merge. Their choice leans to high seed thresholds:
of the pairs within :data:`SEED_TOLERANCE` of the best mean V_rand, the one with the
highest threshold (then the best score) wins. A threshold too low joins two cells'
seeds through a gap in their membrane, which no split undoes, while one too high cuts
cells into pieces that the agglomeration joins again, so on new slices a high
threshold loses little and a low one can lose much (on the EM benchmark's held-out
slices the best mean chose 0.4-0.5 where the test slices needed 0.8, 0.05-0.07 of
V_rand lost; ``benchmarks/em_decoder_grid.py``). For membrane models the chosen pair
may therefore score up to that tolerance below the best on the calibration images.

:meth:`UNetSegmenter.calibrate_instances <skunet.UNetSegmenter.calibrate_instances>` runs
it on a user's images; the ``calibration`` callback
(:class:`~skunet.callbacks.InstanceCalibrator`) runs it on the validation images after
``fit``. The chosen pair is the model's ``instance_params_``, used by
``predict_instances`` and stored in model files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .metrics import annotated_only, match_dataset, rand_scores
from .targets import THRESHOLDS, decoding

__all__ = [
    "IOU_THRESHOLDS",
    "SEED_TOLERANCE",
    "THRESHOLDS",
    "InstanceCalibration",
    "calibrate_instances",
    "calibrate_segmenter",
    "highest_seeds",
    "split_grid",
]

IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
DEFAULT = (0.5, "auto")
SEED_TOLERANCE = 0.01
"""How far below the best mean V_rand a membrane model's chosen pair may score when
its seed threshold is higher (:func:`calibrate_instances`)."""


@dataclass(frozen=True)
class InstanceCalibration:
    """The outcome of :func:`calibrate_instances`.

    ``threshold`` / ``split``: the chosen pair; ``score``: its ``metric``, the mean AP
    over ``iou_thresholds`` (``"mean_ap"``) or, for membrane models, the mean V_rand
    (``"v_rand"``); ``default_score``: the same for the defaults (0.5, "auto");
    ``scores``: every candidate ``(threshold, split) -> score``.
    """

    threshold: float
    split: float | str | None
    score: float
    default_score: float
    iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS
    scores: dict = field(default_factory=dict, repr=False)
    metric: str = "mean_ap"

    @property
    def params(self) -> dict:
        """``{"threshold": ..., "split": ...}``, as ``predict_instances`` takes them."""
        return {"threshold": self.threshold, "split": self.split}


def mean_ap(
    ys_true: Sequence[np.ndarray],
    ys_pred: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> float:
    """StarDist's AP pooled over the images, averaged over ``iou_thresholds``."""
    return float(
        np.mean([m.accuracy for m in match_dataset(ys_true, ys_pred, list(iou_thresholds))])
    )


def mean_v_rand(ys_true: Sequence[np.ndarray], ys_pred: Sequence[np.ndarray]) -> float:
    """The challenge's foreground-restricted V_rand (border thinning), mean over images."""
    return rand_scores(list(ys_true), list(ys_pred)).v_rand


def split_grid(target: str, membranes: bool = False) -> tuple:
    """The splits tried for a model's ``target`` when none are given (the ``splits`` of
    its :func:`~skunet.targets.decoding` record): heights in pixels for ``"boundary"``,
    seed levels for ``"distance"``, border strengths for membrane models,
    none (no split) otherwise.

    >>> split_grid("distance")
    (None, 0.3, 0.4, 0.5, 0.6, 0.7)
    """
    return decoding(target, membranes).splits


def calibrate_instances(
    predictor,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    thresholds: Sequence[float] | None = None,
    splits: Sequence[float | None] | None = None,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> InstanceCalibration:
    """Choose the instance ``threshold`` (and ``split``) that maximise mean AP on
    ``images`` (checked by ``predictor.check_images``) against instance ``labels``, or
    for a membrane model the mean V_rand against its cells (``labels``: cell masks,
    1 = cell / 0 = membrane, or cell labels), where of the pairs within
    :data:`SEED_TOLERANCE` of the best the highest threshold wins (:func:`highest_seeds`).

    ``predictor`` is a fitted :class:`~skunet.predictor.Predictor` of a binary model, a
    membrane model or an instance target (``split`` applies to the latter two only;
    None tries :func:`split_grid`). ``thresholds=None`` tries the decoder's own grid
    (:data:`THRESHOLDS`; membrane models also try 0.8 and 0.9). The images are
    predicted once; every candidate decodes the same probabilities.
    """
    predictor.check_instances()
    if len(images) != len(labels) or not len(images):
        raise ValueError(
            f"calibrate_instances needs one instance-label image per image; got "
            f"{len(images)} images and {len(labels)} label images"
        )
    labels = [np.asarray(lab) for lab in labels]
    probabilities = predictor.probabilities(images)
    record = decoding(predictor.target, predictor.membranes)
    if (predictor.n_classes == 2 and not predictor.membranes) or splits is None:
        splits = record.splits
    if thresholds is None:
        thresholds = record.thresholds
    candidates = [DEFAULT] + [(float(t), s) for t in thresholds for s in splits]
    scores: dict = {}
    for t, s in candidates:
        if (t, s) in scores:
            continue
        # "auto" is the decoder's uncalibrated split, as it is once chosen, not the one
        # an earlier calibration gave the predictor
        split = record.split if s == "auto" else s
        pairs = [
            annotated_only(lab, predictor.instances(p, t, split))
            for lab, p in zip(labels, probabilities)
        ]
        truth, predicted = (list(side) for side in zip(*pairs))
        scores[(t, s)] = (
            mean_v_rand(truth, predicted)
            if predictor.membranes
            else mean_ap(truth, predicted, iou_thresholds)
        )
    best = DEFAULT
    for pair, score in scores.items():
        if score > scores[best]:  # ties keep the earlier candidate: the defaults first
            best = pair
    if predictor.membranes:
        best = highest_seeds(scores, scores[best] - SEED_TOLERANCE)
    return InstanceCalibration(
        threshold=best[0],
        split=best[1],
        score=scores[best],
        default_score=scores[DEFAULT],
        iou_thresholds=tuple(iou_thresholds),
        scores=scores,
        metric="v_rand" if predictor.membranes else "mean_ap",
    )


def highest_seeds(scores: dict, floor: float) -> tuple:
    """Of the ``(threshold, split) -> score`` pairs scoring ``floor`` or more, the one
    with the highest threshold, then the best score, then the earliest.

    >>> highest_seeds({(0.5, "auto"): 0.97, (0.8, 0.85): 0.965, (0.9, 0.85): 0.95}, 0.96)
    (0.8, 0.85)
    """
    near = [pair for pair, score in scores.items() if score >= floor]
    top = max(t for t, _ in near)
    return max((pair for pair in near if pair[0] == top), key=scores.get)


def calibrate_segmenter(
    net,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    thresholds: Sequence[float] | None = None,
    splits: Sequence[float | None] | None = None,
) -> InstanceCalibration:
    """:func:`calibrate_instances` with a fitted segmenter's predictor on checked
    ``images``; the chosen pair becomes its ``instance_params_``, the outcome its
    ``calibration_``."""
    result = calibrate_instances(net.predictor_, images, labels, thresholds, splits)
    net.instance_params_ = result.params
    net.calibration_ = result
    return result
