"""sklearn scorers for segmenters, usable by name: ``GridSearchCV(seg, grid, scoring="ap50")``.

``iou`` and ``dice`` score the pixel classes (mean over foreground classes),
``iou_class_<k>`` / ``dice_class_<k>`` one class (k = 1, 2, 3: for white blood cells 1 is
the cytoplasm and 2 the nucleus), ``dice_whole`` the foreground classes merged (the whole
cell), ``ap50`` and ``f1_50`` the objects of ``predict_instances`` (StarDist's accuracy and
F1 at IoU 0.5), all pooled over the images. A scorer takes a fitted segmenter, or a
``Pipeline`` ending in one, ``X`` and the masks ``y`` as the segmenter's ``fit`` takes them.

Importing skunet adds these names to scikit-learn's table of scorers
(``sklearn.metrics.get_scorer_names()``), which scikit-learn has no public way to extend;
:data:`SCORERS` holds the same callables for explicit use.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from skimage.measure import label

from .metrics import dice_score, iou_score, match_dataset, whole_dice_score
from .targets import mask_classes
from .validation import check_images, check_masks, lookup

__all__ = ["SCORERS", "get_scorer"]


def _segmenter(estimator: Any, X: Any) -> tuple[Any, Any]:
    """The final segmenter and ``X`` transformed by the steps before it."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return estimator, X
    for _, step in steps[:-1]:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return steps[-1][1], X


def _classes(seg: Any, X: Any, y: Any) -> tuple[list, list]:
    images = check_images(X, n_channels=seg.n_channels_in_, as_float=False)
    masks = check_masks(y, images, n_classes=seg.n_classes, target=seg.target)
    truth = [mask_classes(m, seg.n_classes, seg.target) for m in masks]
    return truth, list(seg.predict(X))


def _pixel(metric: Callable, name: str) -> Callable:
    """A scorer of ``metric(truth, pred, n_classes)`` on the predicted class masks."""

    def scorer(estimator: Any, X: Any, y: Any) -> float:
        seg, X = _segmenter(estimator, X)
        truth, pred = _classes(seg, X, y)
        return float(metric(truth, pred, seg.n_classes))

    scorer.__name__ = f"{name}_scorer"
    return scorer


def _one_class(metric: Callable, k: int) -> Callable:
    def score(truth, pred, n_classes):
        if k >= n_classes:
            raise ValueError(f"class {k} does not exist in a {n_classes}-class segmenter")
        value = metric(truth, pred, n_classes=n_classes, average=None)[k]
        return 1.0 if np.isnan(value) else value  # absent from truth and prediction

    return score


def _instances(y: Any) -> np.ndarray:
    y = np.asarray(y)
    # instance labels are kept; a binary mask becomes its connected components
    return y if y.max() > 1 else label(y > 0).astype(np.int32)


def _objects(field: str, thresh: float) -> Callable:
    def scorer(estimator: Any, X: Any, y: Any) -> float:
        seg, X = _segmenter(estimator, X)
        pred = seg.predict_instances(X)
        result = match_dataset([_instances(m) for m in y], list(pred), thresh=thresh)
        return float(getattr(result, field))

    scorer.__name__ = f"{field}_{round(thresh * 100)}_scorer"
    return scorer


SCORERS: dict[str, Callable] = {
    "iou": _pixel(lambda t, p, k: iou_score(t, p, n_classes=k), "iou"),
    "dice": _pixel(lambda t, p, k: dice_score(t, p, n_classes=k), "dice"),
    "dice_whole": _pixel(lambda t, p, k: whole_dice_score(t, p), "dice_whole"),
    **{
        f"{metric.__name__.removesuffix('_score')}_class_{k}": _pixel(
            _one_class(metric, k), f"{metric.__name__.removesuffix('_score')}_class_{k}"
        )
        for metric in (iou_score, dice_score)
        for k in (1, 2, 3)
    },
    "ap50": _objects("accuracy", 0.5),
    "f1_50": _objects("f1", 0.5),
}


def get_scorer(name: str) -> Callable:
    """The scorer registered under ``name``.

    >>> get_scorer("ap50").__name__
    'accuracy_50_scorer'
    """
    return lookup(SCORERS, name, "scorer")


def _register_with_sklearn() -> None:
    try:
        from sklearn.metrics import _scorer
    except ImportError:  # pragma: no cover
        return
    table = getattr(_scorer, "_SCORERS", None)
    if not isinstance(table, dict):  # pragma: no cover
        warnings.warn("scikit-learn's scorer table moved; use skunet.scorers.SCORERS", stacklevel=2)
        return
    for name, scorer in SCORERS.items():
        table.setdefault(name, scorer)
    # scikit-learn validates `scoring` against the names it knew when it loaded: add ours
    # to the options of the functions and classes that take a `scoring` argument
    import sklearn.metrics
    import sklearn.model_selection
    from sklearn.utils._param_validation import StrOptions

    for module in (sklearn.metrics, sklearn.model_selection):
        for obj in vars(module).values():
            constraints = getattr(obj, "_skl_parameter_constraints", None) or getattr(
                obj, "_parameter_constraints", None
            )
            if isinstance(constraints, dict):
                for constraint in constraints.get("scoring", []):
                    if isinstance(constraint, StrOptions):
                        constraint.options.update(SCORERS)


_register_with_sklearn()
