"""Validation scores: IoU counted from the validation batches the net already computes,
any metric of :mod:`skunet.evaluation` on the validation images every few epochs, and
the instance thresholds chosen on the validation images after training."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from skorch.callbacks import Callback, EpochScoring
from torch.utils.data import Subset

from ..calibration import calibrate_segmenter
from ..constraints import Interval, check_params
from ..evaluation import METRICS, score_images
from ..intake.sampling import class_target
from ..intake.validation import lookup
from ..metrics import confusion_matrix, iou_from_confusion
from ..models.blocks import center_crop
from ..prediction.inference import logit_classes
from ..targets import decoding

__all__ = ["InstanceCalibrator", "IoUScoring", "MetricScoring"]


class _ValidationScoring(EpochScoring):
    """An ``EpochScoring`` whose score the subclass computes, and whose best score so far
    is read from the history when training continues (``partial_fit``, a resumed run)."""

    def initialize(self):
        self.best_score_ = np.inf if self.lower_is_better else -np.inf
        self.name_ = self.name
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        pass  # the best score so far is read from the history in the first epoch

    def on_epoch_begin(self, net, **kwargs) -> None:
        if self.best_score_ in (np.inf, -np.inf):  # continuing: best score from the history
            key = self.name_ + "_best"
            best = [row[self.name_] for row in net.history[:-1] if row.get(key)]
            if best:
                self.best_score_ = best[-1]


class IoUScoring(_ValidationScoring):
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
        self.confusion_ = None
        return super().initialize()

    def on_epoch_begin(self, net, **kwargs) -> None:
        self.confusion_ = None
        super().on_epoch_begin(net, **kwargs)

    def on_batch_end(self, net, batch, y_pred, training, **kwargs) -> None:
        if training != self.on_train:
            return
        logits = y_pred.detach()
        target = center_crop(class_target(batch[1]).to(logits.device), *logits.shape[-2:])
        pred, k = logit_classes(logits)
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


class MetricScoring(_ValidationScoring):
    """A metric of :data:`skunet.evaluation.METRICS` on the validation images, recorded
    as ``valid_<metric>`` with ``valid_<metric>_best``, for the checkpoint or early
    stopping to follow (``monitor="valid_v_rand_best"``).

    It predicts the validation images whole, every ``every`` epochs (and after the
    last); other epochs record nan and are never "best". The truth is what the net
    trains on (class maps) for the metrics of cells (``v_rand``, ``v_info``, their
    ``_protocol`` forms) and of pixels; object metrics (``ap50`` ...) compare
    ``predict_instances`` with the validation images' instance labels where the target
    has them (connected components of the foreground otherwise).

    Parameters
    ----------
    metric : str, default="v_rand"
    every : int, default=1
    lower_is_better : bool, default=False

    Examples
    --------
    >>> from skunet import UNetSegmenter
    >>> from skunet.callbacks import MetricScoring
    >>> seg = UNetSegmenter(
    ...     callbacks=[("v_rand", MetricScoring("v_rand", every=2))],
    ...     callbacks__checkpoint__monitor="valid_v_rand_best",
    ... )
    """

    def __init__(self, metric: str = "v_rand", every: int = 1, lower_is_better: bool = False):
        super().__init__(
            scoring=metric, lower_is_better=lower_is_better, name=None, use_caching=False
        )
        self.metric = metric
        self.every = every

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "metric": [str],  # a name of METRICS (looked up in initialize)
        "every": [Interval(int, 1)],
        "lower_is_better": ["boolean"],
    }

    def initialize(self):
        check_params(self.get_params(), self._parameter_constraints, "MetricScoring")
        lookup(METRICS, self.metric, "metric")
        super().initialize()
        self.name_ = f"valid_{self.metric}"
        return self

    def on_epoch_end(self, net, dataset_valid=None, **kwargs) -> None:
        if dataset_valid is None:
            return
        epoch = len(net.history)
        score = float("nan")  # never "best"
        if epoch % self.every == 0 or epoch >= net.max_epochs:
            items = [dataset_valid[i] for i in range(len(dataset_valid))]
            targets = [np.asarray(t) for _, t in items]
            scores = score_images(
                net.predictor_,
                [im for im, _ in items],
                targets,
                _validation_labels(dataset_valid) or targets,
                [self.metric],
            )
            score = scores[self.metric]
        self._record_score(net.history, score)


def _validation_labels(dataset) -> list[np.ndarray] | None:
    """The instance labels of a validation subset of the training images, if kept."""
    labels = getattr(getattr(dataset, "dataset", None), "labels", None)
    if not isinstance(dataset, Subset) or labels is None:
        return None
    return [labels[i] for i in dataset.indices]


class InstanceCalibrator(Callback):
    """After training, choose ``predict_instances``' threshold and split on the
    validation images (``calibration``, a default callback).

    For instance targets (``"boundary"``, ``"distance"``) and EM membrane models trained
    with a ``train_split``: the validation images are predicted once and decoded with
    every pair of ``thresholds`` x ``splits`` (None: the target's grids,
    :func:`~skunet.calibration.split_grid`); the pair with the best mean AP over IoU
    0.5-0.9 against their instance labels (membrane models: the best mean V_rand
    against their cells) becomes the model's ``instance_params_`` (the defaults win ties; see
    :mod:`skunet.calibration`), and ``calibration_`` holds every candidate's score.
    Without validation images it does nothing (use
    :meth:`~skunet.UNetSegmenter.calibrate_instances` on held-out images); pass
    ``callbacks__calibration=None`` to keep the defaults.
    """

    def __init__(self, thresholds=None, splits=None, sink=print) -> None:
        self.thresholds = thresholds
        self.splits = splits
        self.sink = sink

    def on_train_end(self, net, X=None, **kwargs) -> None:
        if net.train_split is None:
            return
        if not decoding(net.target, net.predictor_.membranes).instance_labels:
            return
        _, valid = net.get_split_datasets(X, None)
        labels = _validation_labels(valid)
        if not labels:
            return
        images = [valid[i][0] for i in range(len(valid))]
        result = calibrate_segmenter(net, images, labels, self.thresholds, self.splits)
        if net.verbose and self.sink is not None:
            self.sink(
                f"instances: threshold {result.threshold}, split {result.split}, "
                f"{result.metric.replace('_', ' ')} {result.score:.4f} on the validation "
                f"images (defaults {result.default_score:.4f})"
            )
