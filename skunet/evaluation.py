"""One evaluation path: named metrics of a fitted segmenter on images and masks.

:func:`evaluate` validates ``X`` and ``y`` once, runs the network once per image and
computes every metric asked for from those probabilities: pixel metrics on the class
maps, object metrics on the instances, Rand scores on the masks. ``UNetSegmenter.score``,
the scorers of :mod:`skunet.scorers` and ``skunet evaluate`` (:func:`skunet.tasks.task_metrics`) are
thin layers over it.

Metric names (:data:`METRICS`): ``iou`` and ``dice`` (mean over the foreground classes),
``iou_class_<k>`` / ``dice_class_<k>`` (class k = 0..3), ``dice_whole`` (the
foreground classes merged, e.g. the whole cell), ``ap50`` / ``ap75`` / ``ap90`` and
``f1_50`` (objects of ``predict_instances`` against the instance labels of ``y``, a
binary mask's connected components otherwise: StarDist's accuracy and F1), ``v_rand``,
``v_info`` and ``pixel_error`` (:func:`~skunet.metrics.rand_scores` at the class map),
``v_rand_protocol`` / ``v_info_protocol`` (the ISBI 2012 protocol on the foreground
probability of a binary model: the best threshold, :func:`~skunet.metrics.challenge_scores`).
All are pooled over the images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.measure import label

from .intake.validation import check_masks, lookup
from .metrics import (
    challenge_scores,
    dice_score,
    iou_score,
    match_dataset,
    rand_scores,
    whole_dice_score,
)
from .prediction.inference import expand
from .targets import mask_classes

__all__ = [
    "METRICS",
    "Metric",
    "evaluate",
    "final_segmenter",
    "score_images",
    "uncertainty_ranking",
]


@dataclass(frozen=True)
class Metric:
    """A metric of :func:`evaluate`.

    ``needs`` says what ``fn`` compares: ``"classes"`` (truth and predicted class maps,
    and the number of classes), ``"instances"`` (true and predicted instance labels),
    ``"masks"`` (the masks as given and the predicted class maps) or ``"probabilities"``
    (the masks as given and the probability of the last class). ``field`` picks one
    score of ``fn``'s result (None: the result is the score); metrics that share ``fn``
    share one call of it per evaluation (``v_rand``, ``v_info`` and ``pixel_error`` one
    :func:`~skunet.metrics.rand_scores`, say).
    """

    needs: str
    fn: Callable[..., Any]
    field: str | None = None


def _one_class(metric: Callable, k: int) -> Callable:
    def score(truth, pred, n_classes):
        if k >= n_classes:
            raise ValueError(f"class {k} does not exist in a {n_classes}-class segmenter")
        value = metric(truth, pred, n_classes=n_classes, average=None)[k]
        return 1.0 if np.isnan(value) else value  # absent from truth and prediction

    return score


def _matching(thresh: float) -> Callable:
    return lambda truth, pred: match_dataset(truth, pred, thresh=thresh)


_MATCHING = {t: _matching(t) for t in (0.5, 0.75, 0.9)}

METRICS: dict[str, Metric] = {
    "iou": Metric("classes", lambda t, p, k: iou_score(t, p, n_classes=k)),
    "dice": Metric("classes", lambda t, p, k: dice_score(t, p, n_classes=k)),
    "dice_whole": Metric("classes", lambda t, p, k: whole_dice_score(t, p)),
    **{
        f"{name}_class_{k}": Metric("classes", _one_class(metric, k))
        for name, metric in (("iou", iou_score), ("dice", dice_score))
        for k in range(4)
    },
    "ap50": Metric("instances", _MATCHING[0.5], "accuracy"),
    "ap75": Metric("instances", _MATCHING[0.75], "accuracy"),
    "ap90": Metric("instances", _MATCHING[0.9], "accuracy"),
    "f1_50": Metric("instances", _MATCHING[0.5], "f1"),
    "v_rand": Metric("masks", rand_scores, "v_rand"),
    "v_info": Metric("masks", rand_scores, "v_info"),
    "pixel_error": Metric("masks", rand_scores, "pixel_error"),
    "v_rand_protocol": Metric("probabilities", challenge_scores, "v_rand"),
    "v_info_protocol": Metric("probabilities", challenge_scores, "v_info"),
}
"""Metric name -> :class:`Metric`."""


def final_segmenter(estimator: Any, X: Any) -> tuple[Any, Any]:
    """The segmenter at the end of a ``Pipeline`` (or the estimator itself), and ``X``
    transformed by the steps before it."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return estimator, X
    for _, step in steps[:-1]:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return steps[-1][1], X


def _named(metrics: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    return dict(metrics) if isinstance(metrics, Mapping) else {m: m for m in metrics}


def _instance_labels(mask: np.ndarray) -> np.ndarray:
    # instance labels are kept; a binary mask becomes its connected components
    return mask if mask.max() > 1 else label(mask > 0).astype(np.int32)


def evaluate(
    estimator: Any,
    X: Any,
    y: Any,
    metrics: Sequence[str] | Mapping[str, str],
    label_metrics: Sequence[str] | Mapping[str, str] = (),
) -> dict[str, float]:
    """Metrics of a fitted segmenter (or a ``Pipeline`` ending in one) on ``X`` and ``y``.

    Parameters
    ----------
    estimator : UNetSegmenter or Pipeline
    X, y : images and masks, as the segmenter's ``fit`` takes them
    metrics : list of str, or dict
        Names of :data:`METRICS`, or a dict of reported name -> metric name.
    label_metrics : list of str, or dict, default=()
        Computed as well when the masks hold instance labels (more than two values in a
        mask) and the model gives instances.

    Returns
    -------
    dict
        Reported name -> value (float), in the order asked for.

    Examples
    --------
    >>> from skunet import UNetSegmenter
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.random((32, 32)).astype(np.float32) for _ in range(3)]
    >>> y = [(x > 0.5).astype(np.uint8) for x in X]
    >>> seg = UNetSegmenter(module__depth=2, module__base_channels=4, patch_size=24,
    ...                     padding=4, max_epochs=1, verbose=0, random_state=0).fit(X, y)
    >>> sorted(evaluate(seg, X, y, ["dice", "iou"]))
    ['dice', 'iou']
    """
    seg, X = final_segmenter(estimator, X)
    names = _named(metrics)
    predictor = seg.predictor_
    # images and masks that do not fit the model are named before anything runs
    images = predictor.check_images(X)
    masks = check_masks(y, images, n_classes=seg.n_classes, target=seg.target)
    if (
        label_metrics
        and predictor.gives_instances
        and any(np.unique(m).size > 2 for m in masks)  # instance labels
    ):
        names.update(_named(label_metrics))
    truth = [mask_classes(m, seg.n_classes, seg.target) for m in masks]
    return score_images(predictor, images, truth, masks, names)


def score_images(
    predictor: Any,
    images: Sequence[np.ndarray],
    truth: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    metrics: Sequence[str] | Mapping[str, str],
) -> dict[str, float]:
    """The unchecked core of :func:`evaluate`: metrics of a
    :class:`~skunet.predictor.Predictor` on images it has checked, with their truth as
    class maps (``truth``) and as the masks the metrics of objects and cells read
    (``masks``: instance labels, or class maps where the labels are not known)."""
    names = _named(metrics)
    chosen = {out: lookup(METRICS, name, "metric") for out, name in names.items()}
    needs = {m.needs for m in chosen.values()}
    if "instances" in needs:
        predictor.check_instances()
    pred, instances, last = [], [], []
    if needs & {"instances", "probabilities"}:
        for image in images:  # everything from one pass per image
            p = predictor.probabilities([image])[0]
            pred.append(predictor.classes(p))
            if "instances" in needs:
                instances.append(predictor.instances(p))
            if "probabilities" in needs:
                last.append(expand(p)[-1])
    else:  # class maps only: large images are streamed in bands of tiles
        pred = predictor.probabilities(images, finalize=predictor.classes)
    arguments = {
        "classes": lambda: (truth, pred, predictor.n_classes),
        "instances": lambda: ([_instance_labels(m) for m in masks], instances),
        "probabilities": lambda: ([np.asarray(m) for m in masks], last),
        "masks": lambda: ([np.asarray(m) for m in masks], pred),
    }
    results: dict[Callable, Any] = {}  # one call per computation, however many fields
    out = {}
    for name, metric in chosen.items():
        if metric.fn not in results:
            results[metric.fn] = metric.fn(*arguments[metric.needs]())
        result = results[metric.fn]
        out[name] = float(result if metric.field is None else getattr(result, metric.field))
    return out


def uncertainty_ranking(seg: Any, X: Any) -> list[tuple[int, float]]:
    """``(index, mean uncertainty)`` of each image of ``X``, most uncertain first: where
    to correct labels next (:meth:`~skunet.UNetSegmenter.predict_uncertainty`).

    >>> from skunet.datasets import load_sample
    >>> from skunet.pretrained import load_model
    >>> X, _ = load_sample("nuclei")
    >>> ranking = uncertainty_ranking(load_model("nuclei", tta=False), X[:3])
    >>> sorted(i for i, _ in ranking), ranking[0][1] >= ranking[-1][1]
    ([0, 1, 2], True)
    """
    maps = seg.predict_uncertainty(X)
    scores = [float(np.mean(m)) for m in maps]
    return sorted(enumerate(scores), key=lambda item: -item[1])
