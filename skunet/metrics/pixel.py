"""Pixel metrics (IoU, Dice) from one confusion-matrix kernel, pooled over images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "confusion_matrix",
    "dice_score",
    "iou_from_confusion",
    "iou_score",
    "per_image",
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
