"""scikit-learn scorers for segmenters: pass them as ``scoring=``.

>>> from sklearn.model_selection import GridSearchCV
>>> from skunet.scorers import ap50, dice_class_2
>>> grid = GridSearchCV(UNetSegmenter(), {"lr": [1e-3, 3e-3]}, scoring=ap50)  # doctest: +SKIP
>>> multi = {"nucleus": dice_class_2, "ap50": ap50}  # scoring=multi, refit="ap50"

Each scorer is a callable ``scorer(estimator, X, y) -> float`` (higher is better) over a
fitted segmenter or a ``Pipeline`` ending in one, with ``X`` and the masks ``y`` as the
segmenter's ``fit`` takes them; it computes one metric of :mod:`skunet.evaluation`
(``iou``, ``dice``, ``iou_class_<k>`` / ``dice_class_<k>``, ``dice_whole``, ``ap50``,
``ap75``, ``ap90``, ``f1_50``, ``v_rand``, ``v_info``, ``v_rand_protocol``,
``v_info_protocol``; see there), and :func:`get_scorer`
finds one by name. scikit-learn's own table of scorer names is left alone (it has no
public way to be extended), so ``scoring="ap50"`` as a string is not ours to offer:
pass the object.
"""

from __future__ import annotations

from typing import Any

from .evaluation import METRICS, evaluate
from .intake.validation import lookup

__all__ = [
    "SCORERS",
    "SegmentationScorer",
    "ap50",
    "ap75",
    "ap90",
    "dice",
    "dice_class_1",
    "dice_class_2",
    "dice_class_3",
    "dice_whole",
    "f1_50",
    "get_scorer",
    "iou",
    "iou_class_1",
    "iou_class_2",
    "iou_class_3",
    "v_info",
    "v_info_protocol",
    "v_rand",
    "v_rand_protocol",
]


class SegmentationScorer:
    """The scorer of one metric of :data:`skunet.evaluation.METRICS`.

    Parameters
    ----------
    metric : str

    Examples
    --------
    >>> SegmentationScorer("ap50")
    SegmentationScorer('ap50')
    """

    def __init__(self, metric: str) -> None:
        lookup(METRICS, metric, "metric")
        self.metric = metric

    def __call__(self, estimator: Any, X: Any, y: Any, sample_weight: Any = None) -> float:
        if sample_weight is not None:
            raise ValueError("segmentation scorers pool pixels and objects: no sample_weight")
        return evaluate(estimator, X, y, [self.metric])[self.metric]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metric!r})"

    def __reduce__(self):  # pickles by metric name (joblib workers of GridSearchCV)
        return type(self), (self.metric,)


# "pixel_error" is an error, lower is better: not a scorer
SCORERS: dict[str, SegmentationScorer] = {
    name: SegmentationScorer(name) for name in METRICS if name != "pixel_error"
}
"""Metric name -> scorer."""

iou = SCORERS["iou"]
dice = SCORERS["dice"]
dice_whole = SCORERS["dice_whole"]
iou_class_1, iou_class_2, iou_class_3 = (SCORERS[f"iou_class_{k}"] for k in (1, 2, 3))
dice_class_1, dice_class_2, dice_class_3 = (SCORERS[f"dice_class_{k}"] for k in (1, 2, 3))
ap50, ap75, ap90 = SCORERS["ap50"], SCORERS["ap75"], SCORERS["ap90"]
f1_50 = SCORERS["f1_50"]
v_rand, v_info = SCORERS["v_rand"], SCORERS["v_info"]
v_rand_protocol, v_info_protocol = SCORERS["v_rand_protocol"], SCORERS["v_info_protocol"]


def get_scorer(name: str) -> SegmentationScorer:
    """The scorer of metric ``name``.

    >>> get_scorer("ap50")
    SegmentationScorer('ap50')
    """
    return lookup(SCORERS, name, "scorer")
