"""The callbacks bundled with :class:`skunet.UNetSegmenter`, by concern.

Each one is a small skorch callback that a user can replace or remove by name
(``callbacks__iou=None``):

- :class:`CyclicLRScheduler` (``lr_scheduler``): ``CyclicLR`` stepping every batch, with
  step sizes derived from the batches per epoch;
- :class:`IoUScoring` (``iou``): validation IoU counted from the validation batches the
  net already computes (no second prediction pass, no cached outputs);
- :class:`MetricScoring`: any metric of :mod:`skunet.evaluation` on the validation
  images (V_rand for EM membranes, say), for the checkpoint or early stopping to follow;
- :class:`SegmentationCheckpoint` (``checkpoint``): best epoch saved atomically into a
  directory unique to the fit, restored when training ends;
- :class:`InstanceCalibrator` (``calibration``): after training, the instance threshold
  and split chosen on the validation images: by mean AP for a model with an instance
  target (``"boundary"``, ``"distance"``), by the challenge's V_rand against the cells of
  the masks for a membrane model (EM);
- :class:`EncoderFreezer` (``freezer``): skorch's ``Freezer("conv*")`` for the VGG16
  encoder;
- :class:`WeightAverage` (``weight_average``, off: ``None``): a moving average of the
  weights that the validation, the checkpoint and the fitted model see.

Optional: :class:`TimeLimit` stops a fit before it runs past a wall-clock budget;
:class:`OneCycleLRScheduler` replaces the cyclic rate with one cycle.

:class:`ProgressBar` is skorch's bar with the right number of batches per epoch (patches
per image and whole-image validation batches make skorch's own count wrong); it is on by
default in notebooks. :class:`LivePlot` redraws loss curves and predictions every epoch.

The modules: :mod:`.training` (freezer, checkpoint, time limit), :mod:`.lr_scheduler`
(cyclic and one-cycle rates), :mod:`.averaging` (the weight average), :mod:`.scoring`
(validation IoU and metrics, calibration), :mod:`.logging` (progress bar, live plot), as
skorch arranges its own.
"""

from __future__ import annotations

from .averaging import WeightAverage
from .logging import LivePlot, ProgressBar
from .lr_scheduler import CyclicLRScheduler, OneCycleLRScheduler
from .scoring import InstanceCalibrator, IoUScoring, MetricScoring
from .training import EncoderFreezer, SegmentationCheckpoint, TimeLimit

__all__ = [
    "CyclicLRScheduler",
    "EncoderFreezer",
    "InstanceCalibrator",
    "IoUScoring",
    "LivePlot",
    "MetricScoring",
    "OneCycleLRScheduler",
    "ProgressBar",
    "SegmentationCheckpoint",
    "TimeLimit",
    "WeightAverage",
]
