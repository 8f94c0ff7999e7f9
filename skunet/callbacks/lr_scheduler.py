"""Learning-rate schedules stepped every batch, planned over the length of the run."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

__all__ = ["CyclicLRScheduler", "OneCycleLRScheduler"]


class _PlannedLRScheduler(LRScheduler):
    """A torch scheduler stepped after every training batch, whose arguments depend on
    the length of the run: they are derived (:meth:`resolved_kwargs`) when the first
    epoch starts, once the batches per epoch are known. A run that continues an earlier
    one (``partial_fit``, ``warm_start``, a resumed checkpoint) picks the schedule up
    where the history says it was.

    Each subclass names its torch scheduler in ``policy_class`` and passes its own
    arguments on as keywords."""

    policy_class: type

    def __init__(self, event_name: str = "event_lr", **kwargs) -> None:
        # get_params() reports the fixed policy and stepping: clone() passes them back
        policy = kwargs.pop("policy", self.policy_class)
        step_every = kwargs.pop("step_every", "batch")
        if policy is not self.policy_class or step_every != "batch":
            raise ValueError(
                f"{type(self).__name__} steps {self.policy_class.__name__} every batch; got "
                f"policy={policy!r}, step_every={step_every!r} (use LRScheduler for others)"
            )
        super().__init__(
            policy=self.policy_class, step_every="batch", event_name=event_name, **kwargs
        )

    def on_train_begin(self, net, **kwargs) -> None:
        # The batches per epoch are known only once the training data is split.
        self.lr_scheduler_ = None

    def resolved_kwargs(self, net, batches_per_epoch: int) -> dict:
        """The scheduler's arguments for a run of ``net`` with these batches per epoch."""
        raise NotImplementedError

    @staticmethod
    def _optimizer_defaults(net) -> dict:
        optimizer = getattr(net, "optimizer_", None)
        return optimizer.defaults if optimizer is not None else net.get_params_for("optimizer")

    def planned_lrs(self, net, batches_per_epoch: int) -> np.ndarray:
        """The learning rate of every training batch of ``net.max_epochs`` epochs."""
        kw = {**self.resolved_kwargs(net, batches_per_epoch), "cycle_momentum": False}
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=net.lr)
        scheduler = self.policy_(optimizer, **kw)
        lrs = []
        for _ in range(net.max_epochs * batches_per_epoch):
            lrs.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return np.array(lrs)

    def _new_scheduler(self, net, batches_per_epoch: int, done: int):
        scheduler = self.policy_(net.optimizer_, **self.resolved_kwargs(net, batches_per_epoch))
        with warnings.catch_warnings():  # stepping ahead of the optimizer is the point here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for _ in range(done):
                scheduler.step()
        return scheduler

    def on_epoch_begin(self, net, dataset_train=None, **kwargs) -> None:
        if self.lr_scheduler_ is not None:
            return
        self.batches_per_epoch_ = len(net.get_iterator(dataset_train, training=True))
        done = sum(row.get("train_batch_count", 0) for row in net.history[:-1])
        self.lr_scheduler_ = self._new_scheduler(
            net, self.batches_per_epoch_, self._position(net, self.batches_per_epoch_, done)
        )

    def _position(self, net, batches_per_epoch: int, done: int) -> int:
        """Steps into the schedule after ``done`` training batches of earlier runs."""
        return done


class CyclicLRScheduler(_PlannedLRScheduler):
    """``torch.optim.lr_scheduler.CyclicLR`` stepped after every training batch.

    Unset values are derived when training starts: ``max_lr`` is the net's ``lr``,
    ``base_lr`` a tenth of it, and the step sizes split ``max_epochs`` into whole
    triangular cycles of about four epochs each, so that training ends at ``base_lr``.
    Momentum is cycled only for optimizers with momentum (SGD).

    Parameters
    ----------
    base_lr, max_lr : float, optional
    step_size_up, step_size_down : int, optional
        In batches.
    mode : {"triangular", "triangular2", "exp_range"}, default="triangular"
    cycle_momentum : bool, optional
    **kwargs
        Other ``CyclicLR`` arguments (``gamma``, ``base_momentum``, ...).
    """

    policy_class = CyclicLR

    def __init__(
        self,
        base_lr: float | None = None,
        max_lr: float | None = None,
        step_size_up: int | None = None,
        step_size_down: int | None = None,
        mode: str = "triangular",
        cycle_momentum: bool | None = None,
        event_name: str = "event_lr",
        **kwargs,
    ) -> None:
        super().__init__(
            event_name=event_name,
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            cycle_momentum=cycle_momentum,
            **kwargs,
        )

    def resolved_kwargs(self, net, batches_per_epoch: int) -> dict:
        kw = dict(self.kwargs)
        kw["max_lr"] = net.lr if kw["max_lr"] is None else kw["max_lr"]
        kw["base_lr"] = kw["max_lr"] / 10 if kw["base_lr"] is None else kw["base_lr"]
        total = max(1, net.max_epochs * batches_per_epoch)
        n_cycles = max(1, round(net.max_epochs / 4))
        half = max(1, total // (2 * n_cycles))
        kw["step_size_up"] = kw["step_size_up"] or half
        kw["step_size_down"] = kw["step_size_down"] or (half if self.step_size_up is None else None)
        if kw["cycle_momentum"] is None:  # SGD's momentum; Adam's betas are left alone
            kw["cycle_momentum"] = bool(self._optimizer_defaults(net).get("momentum", 0))
        return kw


class OneCycleLRScheduler(_PlannedLRScheduler):
    """``torch.optim.lr_scheduler.OneCycleLR`` over the whole run, stepped every batch.

    The rate warms up from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of the batches, then anneals to ``max_lr / (div_factor *
    final_div_factor)`` at the last batch; momentum (SGD) or Adam's beta1 moves the
    other way. ``max_lr`` defaults to the net's ``lr`` and the length of the cycle to
    ``max_epochs`` epochs of batches, so one cycle spans one ``fit``. A run that
    continues after a finished cycle (``partial_fit``, ``warm_start``) starts a new
    one; a run resumed from a checkpoint mid-cycle continues it.

    Parameters
    ----------
    max_lr : float, optional
    pct_start : float, default=0.3
    anneal_strategy : {"cos", "linear"}, default="cos"
    div_factor : float, default=25.0
    final_div_factor : float, default=1e4
    cycle_momentum : bool, optional
        Default: cycle when the optimizer has a momentum or betas.
    **kwargs
        Other ``OneCycleLR`` arguments (``base_momentum``, ``max_momentum``, ...).

    Examples
    --------
    >>> from skunet import UNetSegmenter
    >>> seg = UNetSegmenter(lr=3e-3, max_epochs=10, callbacks__lr_scheduler=OneCycleLRScheduler())
    >>> scheduler = dict(seg.initialize_callbacks().callbacks_)["lr_scheduler"]
    >>> lrs = scheduler.planned_lrs(seg, batches_per_epoch=5)  # 10 epochs of 5 batches
    >>> len(lrs), round(float(lrs.max()), 6), bool(lrs[-1] < 1e-6)
    (50, 0.003, True)
    """

    policy_class = OneCycleLR

    def __init__(
        self,
        max_lr: float | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        cycle_momentum: bool | None = None,
        event_name: str = "event_lr",
        **kwargs,
    ) -> None:
        super().__init__(
            event_name=event_name,
            max_lr=max_lr,
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            cycle_momentum=cycle_momentum,
            **kwargs,
        )

    def resolved_kwargs(self, net, batches_per_epoch: int) -> dict:
        kw = dict(self.kwargs)
        kw["max_lr"] = net.lr if kw["max_lr"] is None else kw["max_lr"]
        kw["total_steps"] = max(1, net.max_epochs * batches_per_epoch)
        if kw["cycle_momentum"] is None:  # SGD's momentum or Adam's beta1
            defaults = self._optimizer_defaults(net)
            kw["cycle_momentum"] = bool(defaults.get("momentum", 0)) or "betas" in defaults
        return kw

    def _position(self, net, batches_per_epoch: int, done: int) -> int:
        return done % max(1, net.max_epochs * batches_per_epoch)

    def on_batch_end(self, net, training, **kwargs) -> None:
        super().on_batch_end(net, training=training, **kwargs)
        scheduler = self.lr_scheduler_
        if training and scheduler is not None and scheduler.last_epoch >= scheduler.total_steps:
            # the cycle is complete: a run that goes on starts the next one
            self.lr_scheduler_ = self._new_scheduler(net, self.batches_per_epoch_, 0)
