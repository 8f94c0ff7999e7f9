"""Pixel metrics from one confusion-matrix kernel; object metrics from one matching kernel.

Object metrics follow the StarDist project's ``stardist.matching`` definitions exactly
(the DSB2018 "AP" is ``accuracy = tp / (tp + fp + fn)``), with a one-to-one optimal
matching of true and predicted objects at IoU >= ``thresh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import expand_labels, relabel_sequential

from .targets import cell_instances

__all__ = [
    "Matching",
    "confusion_matrix",
    "dice_score",
    "iou_from_confusion",
    "iou_score",
    "match_dataset",
    "match_instances",
    "per_image",
    "rand_scores",
    "whole_dice_score",
]


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Pixel confusion matrix (rows: truth, columns: prediction), skipping ``y_true < 0``.

    Accepts numpy arrays or torch tensors of the same shape (any device).

    >>> confusion_matrix(np.array([0, 1, 1, -1]), np.array([0, 1, 0, 1]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    k = int(n_classes)
    if isinstance(y_true, torch.Tensor):
        valid = y_true >= 0
        idx = y_true[valid].long() * k + y_pred[valid].long()
        return torch.bincount(idx, minlength=k * k).reshape(k, k).cpu().numpy()
    y_true = np.asarray(y_true)
    valid = y_true >= 0
    idx = y_true[valid].astype(np.int64) * k + np.asarray(y_pred)[valid].astype(np.int64)
    return np.bincount(idx, minlength=k * k).reshape(k, k)


def _pooled_confusion(y_true, y_pred, n_classes: int | None) -> np.ndarray:
    if isinstance(y_true, np.ndarray) and y_true.dtype != object:
        pairs = [(y_true, np.asarray(y_pred))]
    else:
        if len(y_true) != len(y_pred):
            raise ValueError(f"{len(y_true)} true masks but {len(y_pred)} predicted masks")
        pairs = [(np.asarray(t), np.asarray(p)) for t, p in zip(y_true, y_pred)]
    for i, (t, p) in enumerate(pairs):
        if t.shape != p.shape:
            raise ValueError(f"mask {i}: y_true has shape {t.shape} but y_pred {p.shape}")
    if n_classes is None:
        n_classes = max(2, *(int(max(t.max(), p.max())) + 1 for t, p in pairs))
    return sum(confusion_matrix(t, p, n_classes) for t, p in pairs)


def _average(per_class: np.ndarray, average: str | None) -> float | np.ndarray:
    if average is None:
        return per_class
    if average == "foreground":
        values = per_class[1:]
    elif average == "macro":
        values = per_class
    else:
        raise ValueError(f"average={average!r}; use 'foreground', 'macro' or None")
    values = values[~np.isnan(values)]
    # no class present in truth nor prediction: nothing was missed or invented
    return float(values.mean()) if values.size else 1.0


def per_image(metric, y_true, y_pred, **kwargs) -> np.ndarray:
    """``metric`` on each image: an array ``(n_images,)``, or ``(n_images, K)`` with
    ``average=None``.

    >>> t = [np.array([[0, 1]]), np.array([[1, 1]])]
    >>> p = [np.array([[0, 1]]), np.array([[0, 1]])]
    >>> per_image(iou_score, t, p).tolist()
    [1.0, 0.5]
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true masks but {len(y_pred)} predicted masks")
    return np.array([metric(t, p, **kwargs) for t, p in zip(y_true, y_pred)])


def iou_score(
    y_true: np.ndarray | Sequence[np.ndarray],
    y_pred: np.ndarray | Sequence[np.ndarray],
    *,
    n_classes: int | None = None,
    average: str | None = "foreground",
) -> float | np.ndarray:
    """Intersection over union per class, pooled over all pixels of all masks.

    Parameters
    ----------
    y_true, y_pred : class mask or list of class masks
        Masks of the same shapes; negative truth values are ignored.
    n_classes : int, optional
        Defaults to the largest label + 1 (at least 2).
    average : {"foreground", "macro"} or None, default="foreground"
        Mean over classes 1..K-1, over all classes, or the per-class array (NaN for a
        class absent from truth and prediction, which the means skip).

    Examples
    --------
    >>> t = np.array([[0, 1], [1, 1]]); p = np.array([[1, 1], [0, 1]])
    >>> round(iou_score(t, p), 4)
    0.5
    >>> iou_score([t], [p], average=None).round(3).tolist()
    [0.0, 0.5]
    """
    return iou_from_confusion(_pooled_confusion(y_true, y_pred, n_classes), average)


def iou_from_confusion(cm: np.ndarray, average: str | None = "foreground") -> float | np.ndarray:
    """IoU per class of a confusion matrix, averaged as in :func:`iou_score`.

    >>> iou_from_confusion(np.array([[1, 0], [1, 1]]))
    0.5
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denom > 0, tp / denom, np.nan)
    return _average(per_class, average)


def dice_score(
    y_true: np.ndarray | Sequence[np.ndarray],
    y_pred: np.ndarray | Sequence[np.ndarray],
    *,
    n_classes: int | None = None,
    average: str | None = "foreground",
) -> float | np.ndarray:
    """Dice coefficient (F1 of pixels) per class, pooled like :func:`iou_score`.

    >>> t = np.array([[0, 1], [1, 1]]); p = np.array([[1, 1], [0, 1]])
    >>> round(dice_score(t, p), 4)
    0.6667
    """
    cm = _pooled_confusion(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denom > 0, 2 * tp / denom, np.nan)
    return _average(per_class, average)


class Matching(NamedTuple):
    """Object-matching counts and scores at one IoU threshold."""

    thresh: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    accuracy: float
    f1: float
    n_true: int
    n_pred: int
    mean_true_score: float
    mean_matched_score: float
    panoptic_quality: float


def _divide(x: float, y: float) -> float:
    return x / y if abs(y) > 1e-10 else 0.0


def _from_counts(thresh, tp, fp, fn, n_true, n_pred, sum_matched) -> Matching:
    return Matching(
        thresh=float(thresh),
        tp=int(tp),
        fp=int(fp),
        fn=int(fn),
        precision=tp / (tp + fp) if tp > 0 else 0.0,
        recall=tp / (tp + fn) if tp > 0 else 0.0,
        accuracy=tp / (tp + fp + fn) if tp > 0 else 0.0,
        f1=2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0,
        n_true=int(n_true),
        n_pred=int(n_pred),
        mean_true_score=_divide(sum_matched, n_true),
        mean_matched_score=_divide(sum_matched, tp),
        panoptic_quality=_divide(sum_matched, tp + fp / 2 + fn / 2),
    )


def _check_labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"{name} must hold non-negative integer labels, got dtype {y.dtype}")
    return relabel_sequential(y)[0]


def _object_ious(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns)."""
    n_true, n_pred = int(y_true.max()) + 1, int(y_pred.max()) + 1
    overlap = np.bincount(
        y_true.ravel().astype(np.int64) * n_pred + y_pred.ravel(), minlength=n_true * n_pred
    ).reshape(n_true, n_pred)
    area_true = overlap.sum(1, keepdims=True)
    area_pred = overlap.sum(0, keepdims=True)
    union = area_true + area_pred - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, overlap / union, 0.0)
    return iou[1:, 1:]


def _match(scores: np.ndarray, thresh: float) -> tuple[int, float]:
    """(tp, sum of matched IoUs): optimal one-to-one matching at IoU >= thresh."""
    n_matched = min(scores.shape)
    if n_matched == 0:
        return 0, 0.0
    # as StarDist: maximise the matches above thresh, break ties by IoU
    costs = -(scores >= thresh).astype(float) - scores / (2 * n_matched)
    rows, cols = linear_sum_assignment(costs)
    matched = scores[rows, cols]
    ok = matched >= thresh
    return int(ok.sum()), float(matched[ok].sum())


def match_instances(
    y_true: np.ndarray, y_pred: np.ndarray, thresh: float | Sequence[float] = 0.5
) -> Matching | list[Matching]:
    """Match the objects of two instance-label images (0 = background).

    Parameters
    ----------
    y_true, y_pred : ndarray of int
        Instance labels of the same shape.
    thresh : float or sequence of float, default=0.5
        IoU thresholds; a sequence gives one result per threshold.

    Returns
    -------
    Matching or list of Matching
        ``tp, fp, fn, precision, recall, accuracy (tp / (tp + fp + fn)), f1, n_true,
        n_pred, mean_true_score, mean_matched_score, panoptic_quality``.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2, 2]])
    >>> p = np.array([[1, 1, 0, 0, 2]])
    >>> m = match_instances(t, p, thresh=0.5)
    >>> m.tp, m.fp, m.fn, m.accuracy
    (2, 0, 0, 1.0)
    >>> match_instances(t, p, thresh=0.6).accuracy
    0.3333333333333333
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred {y_pred.shape}")
    scores = _object_ious(_check_labels(y_true, "y_true"), _check_labels(y_pred, "y_pred"))
    n_true, n_pred = scores.shape
    results = []
    for t in np.atleast_1d(thresh):
        tp, matched = _match(scores, float(t))
        results.append(_from_counts(t, tp, n_pred - tp, n_true - tp, n_true, n_pred, matched))
    return results[0] if np.isscalar(thresh) else results


def match_dataset(
    ys_true: Sequence[np.ndarray],
    ys_pred: Sequence[np.ndarray],
    thresh: float | Sequence[float] = 0.5,
) -> Matching | list[Matching]:
    """Object matching pooled over images: counts summed, then the scores.

    >>> t = [np.array([[1, 0, 2]]), np.array([[0, 1]])]
    >>> p = [np.array([[1, 0, 0]]), np.array([[1, 1]])]
    >>> m = match_dataset(t, p)
    >>> m.tp, m.fp, m.fn
    (2, 0, 1)
    """
    if len(ys_true) != len(ys_pred):
        raise ValueError(f"{len(ys_true)} true label images but {len(ys_pred)} predicted")
    thresholds = np.atleast_1d(thresh)
    per_image = []
    for i, (t, p) in enumerate(zip(ys_true, ys_pred)):
        t, p = np.asarray(t), np.asarray(p)
        if t.shape != p.shape:
            raise ValueError(f"image {i}: y_true has shape {t.shape} but y_pred {p.shape}")
        result = match_instances(t, p, list(thresholds))
        per_image.append(result)
    pooled = []
    for k, t in enumerate(thresholds):
        rows = [r[k] for r in per_image]
        tp, fp, fn = (sum(getattr(r, f) for r in rows) for f in ("tp", "fp", "fn"))
        n_true, n_pred = sum(r.n_true for r in rows), sum(r.n_pred for r in rows)
        matched = sum(r.mean_true_score * r.n_true for r in rows)
        pooled.append(_from_counts(t, tp, fp, fn, n_true, n_pred, matched))
    return pooled[0] if np.isscalar(thresh) else pooled


def whole_dice_score(
    y_true: np.ndarray | Sequence[np.ndarray], y_pred: np.ndarray | Sequence[np.ndarray]
) -> float:
    """Dice of the foreground as a whole (every class > 0 merged), pooled over pixels.

    For white blood cells this is the whole cell, cytoplasm and nucleus together; a
    pixel predicted nucleus but truly cytoplasm still counts as found.

    >>> round(whole_dice_score(np.array([[0, 1, 2]]), np.array([[0, 2, 2]])), 4)
    1.0
    """
    cm = _pooled_confusion(y_true, y_pred, None).astype(np.float64)
    tp, fp, fn = cm[1:, 1:].sum(), cm[0, 1:].sum(), cm[1:, 0].sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0


class RandScores(NamedTuple):
    """ISBI 2012 challenge scores of a segmentation (higher is better but ``pixel_error``)."""

    v_rand: float
    v_rand_split: float
    v_rand_merge: float
    v_info: float
    v_info_split: float
    v_info_merge: float
    pixel_error: float


def _ratio(x: float, y: float) -> float:
    return min(float(x / y), 1.0) if y > 0 else 1.0  # 1 + 2e-16 is rounding


def _rand_scores(y_true: np.ndarray, y_pred: np.ndarray, thin: bool) -> RandScores:
    true, pred = cell_instances(y_true), cell_instances(y_pred)
    pixel_error = float(np.mean((true > 0) != (pred > 0)))
    if thin and pred.any():  # predicted membranes thinned to the seams between cells
        pred = expand_labels(pred, distance=max(pred.shape))
    inside = true > 0  # foreground-restricted: the true membrane does not count
    if not inside.any():
        return RandScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, pixel_error)
    _, t = np.unique(true[inside], return_inverse=True)
    _, q = np.unique(pred[inside], return_inverse=True)
    n = inside.sum()
    _, joint = np.unique(t.astype(np.int64) * (q.max() + 1) + q, return_counts=True)
    p_ij = joint / n
    p_t = np.bincount(t) / n  # segments of the truth
    p_q = np.bincount(q) / n  # of the prediction (its membrane, 0, is one segment)
    sum_ij, sum_t, sum_q = (p_ij**2).sum(), (p_t**2).sum(), (p_q**2).sum()
    h_t, h_q = -(p_t * np.log(p_t)).sum(), -(p_q * np.log(p_q)).sum()
    mutual = h_t + h_q + (p_ij * np.log(p_ij)).sum()
    return RandScores(
        v_rand=_ratio(2 * sum_ij, sum_t + sum_q),
        v_rand_split=_ratio(sum_ij, sum_t),
        v_rand_merge=_ratio(sum_ij, sum_q),
        v_info=_ratio(2 * mutual, h_t + h_q),
        v_info_split=_ratio(mutual, h_q),
        v_info_merge=_ratio(mutual, h_t),
        pixel_error=pixel_error,
    )


def rand_scores(
    y_true: np.ndarray | Sequence[np.ndarray],
    y_pred: np.ndarray | Sequence[np.ndarray],
    thin: bool = True,
) -> RandScores:
    """Foreground-restricted Rand and information scores, as the ISBI 2012 challenge.

    Cells are the segments and membrane the boundary: binary masks (1 = cell, 0 =
    membrane) are split into 4-connected cells, other integer images are taken as
    labels. Only pixels inside true cells count. With ``thin`` (the challenge's "border
    thinning") every predicted membrane pixel joins its nearest predicted cell, so that
    thick predicted membranes cost nothing and only gaps (merges) and spurious
    membranes (splits) do; without it the predicted membrane pixels form one segment of
    their own (scikit-image's ``adapted_rand_error`` convention). With p_ij the joint
    distribution of true segment i and predicted segment j over those pixels, t_i and
    q_j its marginals:

    - ``v_rand = 2 sum p_ij^2 / (sum t_i^2 + sum q_j^2)``, the harmonic mean of
      ``v_rand_split = sum p_ij^2 / sum t_i^2`` (1 without split cells) and
      ``v_rand_merge = sum p_ij^2 / sum q_j^2`` (1 without merged cells);
    - ``v_info = 2 I(T; Q) / (H(T) + H(Q))``, the harmonic mean of
      ``v_info_split = I / H(Q)`` and ``v_info_merge = I / H(T)``;
    - ``pixel_error``: the fraction of all pixels whose cell / membrane class differs.

    Lists of images give the mean of each score over the images (slices).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 1, 1]])
    >>> rand_scores(truth, truth).v_rand
    1.0
    >>> s = rand_scores(truth, np.array([[1, 1, 1, 1, 1]]))  # the two cells merged
    >>> round(s.v_rand, 3), s.v_rand_split, round(s.pixel_error, 2)
    (0.667, 1.0, 0.2)
    >>> rand_scores(truth, np.array([[1, 0, 0, 0, 1]])).v_rand  # thick membrane: no cost
    1.0
    """
    if isinstance(y_true, np.ndarray) and y_true.dtype != object and y_true.ndim == 2:
        y_true, y_pred = [y_true], [np.asarray(y_pred)]
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true masks but {len(y_pred)} predicted masks")
    scores = []
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        t, p = np.asarray(t), np.asarray(p)
        if t.shape != p.shape or t.ndim != 2:
            raise ValueError(f"mask {i}: y_true has shape {t.shape} but y_pred {p.shape}")
        for name, a in (("y_true", t), ("y_pred", p)):
            if not (a.dtype == bool or np.issubdtype(a.dtype, np.integer)) or a.min() < 0:
                raise ValueError(
                    f"mask {i}: {name} must hold a binary mask or non-negative integer "
                    f"labels, got dtype {a.dtype}"
                )
        scores.append(_rand_scores(t, p, thin))
    return RandScores(*np.mean(np.array(scores, dtype=np.float64), axis=0).tolist())
