"""The three tasks as the command line sees them: preset, image colour, and metrics.

A saved model does not name its task; :func:`task_of` tells it from the model itself
(instance targets: nuclei; three classes: blood cells; the weight-map loss: EM; other
binary models: plain foreground segmentation), and :func:`task_metrics` computes what
that task's benchmark reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .datasets import _to_color
from .estimator import UNetSegmenter
from .losses import WeightMapLoss
from .metrics import dice_score, iou_score, match_dataset, rand_scores, whole_dice_score
from .presets import blood_cell_segmenter, em_segmenter, nuclei_segmenter
from .targets import mask_classes
from .validation import check_masks

__all__ = ["TASKS", "as_task_color", "task_metrics", "task_of"]

TASKS: dict[str, tuple[Callable[..., UNetSegmenter], int]] = {
    "nuclei": (nuclei_segmenter, 1),
    "blood-cells": (blood_cell_segmenter, 3),
    "em": (em_segmenter, 1),
}
"""Task name -> (preset, channels of the images it trains on: 1 gray, 3 RGB)."""


def task_of(seg: UNetSegmenter) -> str:
    """``"nuclei"``, ``"blood-cells"``, ``"em"`` or ``"binary"`` for a fitted segmenter."""
    if seg.target == "boundary":
        return "nuclei"
    if seg.n_classes == 3:
        return "blood-cells"
    criterion = seg.criterion
    if isinstance(criterion, type) and issubclass(criterion, WeightMapLoss):
        return "em"
    return "binary" if seg.n_classes == 2 else f"{seg.n_classes}-class"


def as_task_color(image: np.ndarray, n_channels: int) -> np.ndarray:
    """An image as the model's channels: gray (1) or RGB (3) from gray, RGB or RGBA files."""
    if n_channels == 1:
        return _to_color(image, "gray")
    if n_channels == 3:
        return _to_color(image, "rgb")
    return image


def task_metrics(seg: UNetSegmenter, X: list[np.ndarray], y: list[np.ndarray]) -> dict[str, Any]:
    """The task's metrics of ``seg`` on images ``X`` with masks ``y`` (pooled over images).

    nuclei: AP (tp / (tp + fp + fn)) at IoU 0.5 and 0.75, F1 at 0.5, pixel IoU; blood
    cells: Dice and IoU per class and whole-cell Dice; EM: V_rand, V_info, pixel error;
    binary: IoU and Dice of the foreground (plus object AP when the masks hold labels).
    """
    task = task_of(seg)
    out: dict[str, Any] = {"task": task, "images": len(X)}
    # masks that do not fit the model (sizes, classes) are named before anything runs
    images = seg._check_images(X)
    y = check_masks(y, images, n_classes=seg.n_classes, target=seg.target)
    truth = [mask_classes(m, seg.n_classes, seg.target) for m in y]
    wants_objects = task == "nuclei" or (
        task not in ("blood-cells", "em") and any(len(np.unique(m)) > 2 for m in y)
    )
    if wants_objects:  # classes and instances from one pass of the network per image
        pred, instances = [], []
        for image in images:
            p = seg._predict_images([image])[0]
            pred.append(seg._classes(p))
            instances.append(seg._instances(p))
    else:
        pred = seg._predict_images(images, finalize=seg._classes)
    k = seg.n_classes
    if task == "blood-cells":
        for name, values in (("dice", dice_score), ("iou", iou_score)):
            per_class = values(truth, pred, n_classes=k, average=None)
            for cls, v in zip(("background", "cytoplasm", "nucleus"), per_class):
                out[f"{name}_{cls}"] = float(v)
        out["dice_whole_cell"] = whole_dice_score(truth, pred)
        return out
    out["iou"] = float(iou_score(truth, pred, n_classes=k))
    out["dice"] = float(dice_score(truth, pred, n_classes=k))
    if task == "em":
        scores = rand_scores([np.asarray(m) for m in y], pred)
        out.update({f: getattr(scores, f) for f in ("v_rand", "v_info", "pixel_error")})
    elif wants_objects:
        m50, m75 = match_dataset(y, instances, thresh=[0.5, 0.75])
        out.update(ap50=m50.accuracy, ap75=m75.accuracy, f1_50=m50.f1)
    return out
