"""An exponential moving average of the weights, validated, checkpointed and kept."""

from __future__ import annotations

from typing import ClassVar

import torch
from skorch.callbacks import Callback
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..constraints import Interval

__all__ = ["WeightAverage"]


class WeightAverage(Callback):
    """Keep an exponential moving average (EMA) of the network's weights and finish
    with it (``callbacks__weight_average=WeightAverage()``).

    From epoch ``start`` on, every training batch moves the average towards the
    network's weights by ``1 - decay`` (batch-norm statistics too), with
    :class:`torch.optim.swa_utils.AveragedModel`. At the end of each such epoch's
    training the average takes the network's place until the next epoch begins, so
    what follows the training of an epoch sees it: the validation loss and IoU, the
    checkpoint (which keeps and restores the best *average*), the calibration of
    instance thresholds and the model ``fit`` returns. The optimizer keeps working on
    the network's own weights. An average smooths the last epochs' noise, at no cost
    at prediction time.

    Parameters
    ----------
    decay : float, default=0.999
        Weight of the old average at each batch: the average spans about
        ``1 / (1 - decay)`` batches (1000 for 0.999).
    start : int or float, default=0.5
        The first averaged epoch: an epoch number (1 = the first), or a fraction of
        ``max_epochs`` (0.5: the second half). Epochs are counted in the fit's history,
        so a ``warm_start`` fit that continues counts on.

    Attributes
    ----------
    average_ : AveragedModel or None
        The average, once it has started (``None`` before).

    Notes
    -----
    With ``resume`` from a checkpoint folder, the saved ``last.pt`` holds the
    average as the network's weights, and the average restarts from them.

    Examples
    --------
    >>> from skunet import UNetSegmenter
    >>> seg = UNetSegmenter(callbacks__weight_average=WeightAverage(decay=0.99, start=0.75))
    """

    _parameter_constraints: ClassVar[dict] = {
        "decay": [Interval(float, 0, 1, "neither")],
        "start": [Interval(int, 1, None, "left"), Interval(float, 0, 1, "left")],
    }

    def __init__(self, decay: float = 0.999, start: int | float = 0.5) -> None:
        self.decay = decay
        self.start = start

    def initialize(self):
        self.average_ = None
        self.stashed_ = None  # the network's weights while the average stands in for them
        return self

    def first_epoch(self, net) -> int:
        """The first epoch (1-based, counted in the history) that is averaged."""
        if isinstance(self.start, float):
            return max(1, round(self.start * net.max_epochs) + 1)
        return self.start

    def on_train_begin(self, net, **kwargs) -> None:
        self.average_ = None
        self.stashed_ = None

    def on_epoch_begin(self, net, **kwargs) -> None:
        self._restore(net)

    def on_batch_end(self, net, batch=None, training=None, **kwargs) -> None:
        if not training or len(net.history) < self.first_epoch(net):
            return
        if self.average_ is None:  # the first update copies the weights
            self.average_ = AveragedModel(
                net.module_, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
            )
        self.average_.update_parameters(net.module_)

    def on_batch_begin(self, net, batch=None, training=None, **kwargs) -> None:
        if not training:  # the validation of an epoch: the average answers it
            self._stand_in(net)

    def on_epoch_end(self, net, **kwargs) -> None:
        self._stand_in(net)

    def on_train_end(self, net, **kwargs) -> None:
        self.stashed_ = None  # the average stays: fit returns it

    def _stand_in(self, net) -> None:
        if self.average_ is None or self.stashed_ is not None:
            return
        state = net.module_.state_dict()
        self.stashed_ = {k: v.detach().clone() for k, v in state.items()}
        averaged = self.average_.module.state_dict()
        with torch.no_grad():
            for key, value in state.items():
                if value.is_floating_point():  # not batch norm's counters
                    value.copy_(averaged[key])

    def _restore(self, net) -> None:
        if self.stashed_ is None:
            return
        net.module_.load_state_dict(self.stashed_)
        self.stashed_ = None
