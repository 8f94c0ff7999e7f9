"""Validation IoU counted from the validation batches the net already computes."""

from __future__ import annotations

import math

import numpy as np
from skorch.callbacks import EpochScoring

from ..dataset import class_target
from ..metrics import confusion_matrix, iou_from_confusion
from ..models.blocks import center_crop

__all__ = ["IoUScoring"]


class IoUScoring(EpochScoring):
    """Validation IoU (mean over foreground classes), counted batch by batch.

    The confusion matrix of every validation batch is accumulated from the network
    output the validation step already produced, on the target pixels that are not
    ignored. Classes are taken as ``logit > 0`` for one output channel, else argmax.
    """

    def __init__(
        self, name: str = "valid_iou", lower_is_better: bool = False, on_train: bool = False
    ) -> None:
        super().__init__(
            scoring="iou",
            lower_is_better=lower_is_better,
            on_train=on_train,
            name=name,
            use_caching=False,
        )

    def initialize(self):
        self.best_score_ = np.inf if self.lower_is_better else -np.inf
        self.name_ = self.name
        self.confusion_ = None
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        pass  # the best score so far is read from the history in the first epoch

    def on_epoch_begin(self, net, **kwargs) -> None:
        self.confusion_ = None
        if self.best_score_ in (np.inf, -np.inf):  # continuing: best score from the history
            key = self.name_ + "_best"
            best = [row[self.name_] for row in net.history[:-1] if row.get(key)]
            if best:
                self.best_score_ = best[-1]

    def on_batch_end(self, net, batch, y_pred, training, **kwargs) -> None:
        if training != self.on_train:
            return
        logits = y_pred.detach()
        target = center_crop(class_target(batch[1]).to(logits.device), *logits.shape[-2:])
        if logits.shape[1] == 1:
            pred, k = (logits[:, 0] > 0).long(), 2
        else:
            pred, k = logits.argmax(1), logits.shape[1]
        cm = confusion_matrix(target, pred, k)  # IGNORE (< 0) pixels are skipped
        self.confusion_ = cm if self.confusion_ is None else self.confusion_ + cm

    def on_epoch_end(self, net, **kwargs) -> None:
        if self.confusion_ is None:
            return
        score = iou_from_confusion(self.confusion_)  # mean over foreground classes
        losses = [
            b[k] for b in net.history[-1, "batches"] for k in ("train_loss", "valid_loss") if k in b
        ]
        if not all(math.isfinite(v) for v in losses):
            score = float("nan")  # weights from a diverged epoch never become "best"
        self._record_score(net.history, score)

    def on_train_end(self, *args, **kwargs) -> None:
        self.confusion_ = None
