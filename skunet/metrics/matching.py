"""Object metrics: one-to-one matching of true and predicted instances at an IoU
threshold, with StarDist's ``stardist.matching`` definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import relabel_sequential

__all__ = [
    "Matching",
    "aji_score",
    "annotated_only",
    "match_dataset",
    "match_instances",
    "seg_score",
]


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


def _overlap(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pixels shared by every true label (rows, 0 = background) and every predicted
    label (columns) of two checked label images."""
    n_true, n_pred = int(y_true.max()) + 1, int(y_pred.max()) + 1
    return np.bincount(
        y_true.ravel().astype(np.int64) * n_pred + y_pred.ravel(), minlength=n_true * n_pred
    ).reshape(n_true, n_pred)


def _object_ious(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns)."""
    overlap = _overlap(y_true, y_pred)
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


def annotated_only(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A partial truth and a prediction, restricted to where the truth is annotated.

    ``y_true`` may mark pixels nobody annotated with a negative value (-1, as masks
    given to ``fit`` may): they become background, and a predicted object with most
    of its pixels there is removed, since nothing says whether it is right. A truth
    without negative values is returned as it is.

    >>> t = np.array([[1, 1, 0, -1, -1, -1]])
    >>> p = np.array([[1, 1, 0, 0, 2, 2]])
    >>> [a.tolist() for a in annotated_only(t, p)]
    [[[1, 1, 0, 0, 0, 0]], [[1, 1, 0, 0, 0, 0]]]
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    unknown = y_true < 0
    if not unknown.any():
        return y_true, y_pred
    pred = np.asarray(y_pred, dtype=np.int64)
    inside = np.bincount(pred[unknown].ravel(), minlength=int(pred.max()) + 1)
    area = np.bincount(pred.ravel(), minlength=len(inside))
    dropped = np.flatnonzero(2 * inside > area)
    dropped = dropped[dropped > 0]
    kept = np.where(np.isin(pred, dropped), 0, y_pred).astype(y_pred.dtype)
    return np.where(unknown, 0, y_true).astype(y_true.dtype), kept


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


def seg_score(
    ys_true: np.ndarray | Sequence[np.ndarray], ys_pred: np.ndarray | Sequence[np.ndarray]
) -> float:
    """The Cell Tracking Challenge's SEG measure of one or more label images.

    Each true object is matched to the predicted object that covers more than half of
    its pixels (at most one can) and scores their IoU, or 0 when no predicted object
    does; SEG is the mean over all true objects of all images. Predicted objects that
    match nothing cost nothing, so a partial ground truth (only some cells annotated)
    is scored as the challenge scores it.

    >>> t = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> p = np.array([[3, 3, 3, 0, 0, 0, 4]])  # 3/4 of object 1; 1/2 of object 2
    >>> seg_score(t, p)
    0.375
    """
    single = isinstance(ys_true, np.ndarray) and isinstance(ys_pred, np.ndarray)
    pairs = [(ys_true, ys_pred)] if single else list(zip(ys_true, ys_pred, strict=True))
    scores: list[np.ndarray] = []
    for i, (t, p) in enumerate(pairs):
        t, p = np.asarray(t), np.asarray(p)
        if t.shape != p.shape:
            raise ValueError(f"image {i}: y_true has shape {t.shape} but y_pred {p.shape}")
        full = _overlap(_check_labels(t, "y_true"), _check_labels(p, "y_pred"))
        overlap, area_pred = full[1:], full.sum(0)  # rows: true objects
        area_true, n_pred = overlap.sum(1), full.shape[1]
        best = overlap[:, 1:].argmax(1) + 1 if n_pred > 1 else np.zeros(len(overlap), int)
        common = overlap[np.arange(len(overlap)), best]
        iou = common / (area_true + area_pred[best] - common)
        scores.append(np.where((best > 0) & (2 * common > area_true), iou, 0.0))
    joined = np.concatenate(scores) if scores else np.zeros(0)
    return float(joined.mean()) if joined.size else 0.0


def aji_score(
    ys_true: np.ndarray | Sequence[np.ndarray], ys_pred: np.ndarray | Sequence[np.ndarray]
) -> float:
    """The Aggregated Jaccard Index (Kumar et al., IEEE TMI 2017), the MoNuSeg ranking.

    Each true object is paired with the predicted object of highest IoU with it (none
    when no predicted object touches it); AJI is the sum of the pairs' intersections
    over the sum of their unions plus the areas of the true objects left unpaired and of
    the predicted objects never chosen. As MoNuSeg ranks, several images score the mean
    of their AJIs.

    >>> t = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> p = np.array([[3, 3, 3, 0, 0, 0, 4]])  # 3/4 of object 1; 1/2 of object 2
    >>> aji_score(t, p)  # (3 + 1) / (4 + 2)
    0.6666666666666666
    """
    single = isinstance(ys_true, np.ndarray) and isinstance(ys_pred, np.ndarray)
    pairs = [(ys_true, ys_pred)] if single else list(zip(ys_true, ys_pred, strict=True))
    scores = []
    for i, (t, p) in enumerate(pairs):
        t, p = np.asarray(t), np.asarray(p)
        if t.shape != p.shape:
            raise ValueError(f"image {i}: y_true has shape {t.shape} but y_pred {p.shape}")
        full = _overlap(_check_labels(t, "y_true"), _check_labels(p, "y_pred"))
        overlap = full[1:, 1:]
        area_true, area_pred = full[1:].sum(1), full[:, 1:].sum(0)
        union = area_true[:, None] + area_pred[None, :] - overlap
        iou = np.divide(overlap, union, out=np.zeros(overlap.shape), where=union > 0)
        paired = (iou.max(1) > 0) if iou.size else np.zeros(len(area_true), bool)
        best = iou.argmax(1) if iou.shape[1] else np.zeros(len(area_true), int)
        rows = np.flatnonzero(paired)
        inter = overlap[rows, best[rows]].sum()
        total = union[rows, best[rows]].sum() + area_true[~paired].sum()
        total += area_pred[np.setdiff1d(np.arange(len(area_pred)), best[rows])].sum()
        scores.append(_divide(float(inter), float(total)) if total else 1.0)
    return float(np.mean(scores)) if scores else 0.0
