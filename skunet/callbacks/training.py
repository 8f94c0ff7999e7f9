"""Training-loop callbacks: the encoder freezer, the best-epoch checkpoint and the
wall-clock limit."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from skorch.callbacks import Callback, Checkpoint, Freezer
from skorch.history import History

from ..constraints import Interval, check_params
from ..persistence import atomic_path

__all__ = ["EncoderFreezer", "SegmentationCheckpoint", "TimeLimit"]


class EncoderFreezer(Freezer):
    """skorch's ``Freezer`` for ``"conv*"`` parameters (the VGG16 encoder), made loud.

    It freezes what skorch's ``Freezer("conv*")`` freezes, at the start of the first
    epoch. Modules that do not declare a frozen encoder (``freezes_encoder = True``, as
    :class:`~skunet.models.VGG16UNet` does) but have parameters named ``conv*`` get a
    warning, and a module left with nothing to train is an error, so that a user's own
    network is never frozen silently.
    """

    def __init__(self, patterns="conv*", **kwargs) -> None:
        super().__init__(patterns, **kwargs)

    def on_epoch_begin(self, net, **kwargs) -> None:
        if not self.at(net):
            super().on_epoch_begin(net, **kwargs)
            return
        matched = [n for n, _ in self.filter_parameters(self.patterns, self.named_parameters(net))]
        super().on_epoch_begin(net, **kwargs)
        if not matched or getattr(net.module_, "freezes_encoder", False):
            return
        if not any(p.requires_grad for p in net.module_.parameters()):
            raise ValueError(
                f"callbacks__freezer froze every parameter of {type(net.module_).__name__} "
                f"(patterns {self.patterns}); set callbacks__freezer=None to train it"
            )
        warnings.warn(
            f"callbacks__freezer froze {len(matched)} parameters of "
            f"{type(net.module_).__name__} matching {self.patterns} (e.g. {matched[0]}); "
            "set callbacks__freezer=None if that is not intended",
            UserWarning,
            stacklevel=2,
        )


class SegmentationCheckpoint(Checkpoint):
    """Checkpoint of the best epoch, written atomically, restored at the end of ``fit``.

    Without ``dirname`` every fit writes into a fresh temporary directory
    (``dirname_``), so parallel fits never share a file and nothing lands in the working
    directory; that directory is removed when the fit ends, also when training raised
    an error (then by the estimator, as skorch skips ``on_train_end``).

    A named ``dirname`` is kept, and after every epoch it also receives ``last.pt``: the
    weights, optimizer state and history of the latest epoch in one atomically replaced
    file. With ``resume=True``, ``fit`` starts from ``last.pt`` when it exists (a run
    that was interrupted, even by SIGKILL) and trains up to ``max_epochs`` epochs in all.

    When the monitored score is missing (no validation data), the latest epoch is saved
    as the best.

    Parameters
    ----------
    monitor : str, default="valid_iou_best"
    f_params, f_optimizer, f_criterion, f_history : str or None
        File names of the best epoch's state, as in skorch's ``Checkpoint``.
    dirname : str, default=""
    load_best : bool, default=True
        Restore the best epoch's weights when training ends (the history keeps every
        epoch). A fit that continues (``warm_start``) restores the weights it started
        from when none of its epochs beats the earlier best.
    resume : bool, default=False
        Continue from ``dirname/last.pt`` if it exists.
    """

    LAST = "last.pt"

    def __init__(
        self,
        monitor: str = "valid_iou_best",
        f_params: str = "params.pt",
        f_optimizer: str | None = None,
        f_criterion: str | None = None,
        f_history: str = "history.json",
        dirname: str = "",
        load_best: bool = True,
        resume: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(
            monitor=monitor,
            f_params=f_params,
            f_optimizer=f_optimizer,
            f_criterion=f_criterion,
            f_history=f_history,
            dirname=dirname,
            load_best=load_best,
            **kwargs,
        )
        self.resume = resume

    def initialize(self):
        super().initialize()
        if self.resume and not self.dirname:
            raise ValueError("resume=True needs a named checkpoint dirname to resume from")
        self.dirname_ = self.dirname or None
        self.saved_ = False
        self.resumed_ = False
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        if self.dirname_ is None:
            self.dirname_ = tempfile.mkdtemp(prefix="skunet-checkpoint-")
        os.makedirs(self.dirname_, exist_ok=True)
        last = os.path.join(self.dirname_, self.LAST)
        if self.resume and not self.resumed_ and os.path.exists(last):
            state = torch.load(last, map_location=net.device, weights_only=True)
            net.module_.load_state_dict(state["module"])
            net.optimizer_.load_state_dict(state["optimizer"])
            net.history = History(json.loads(state["history"]))
            self.resumed_ = True
            self.saved_ = os.path.exists(self._format_target(net, self.f_params, -1))
            self._sink(f"Resumed from {last} after epoch {len(net.history)}.", net.verbose)
        elif self.load_best and len(net.history):  # warm_start: a fit continues
            # the best score so far counts the earlier epochs, so the weights this fit
            # starts from stand as the best until an epoch beats them
            self.save_model(net)

    def on_epoch_begin(self, net, **kwargs) -> None:
        if self.resumed_ and len(net.history) > net.max_epochs:
            net.history.pop()  # the resumed run has all its epochs: stop as skorch does
            raise KeyboardInterrupt

    def _format_target(self, net, f, idx):
        target = super()._format_target(net, f, idx)
        if isinstance(target, str) and not self.dirname and self.dirname_:
            target = os.path.join(self.dirname_, target)
        return target

    @property
    def f_history_(self):
        if self.f_history is None:
            return None
        return os.path.join(self.dirname_ or self.dirname, self.fn_prefix + self.f_history)

    def _save_params(self, f, net, f_name, log_name):
        if not isinstance(f, str):
            return super()._save_params(f, net, f_name, log_name)
        with atomic_path(f) as tmp:
            net.save_params(**{f_name: tmp, "use_safetensors": self.use_safetensors})
        self.saved_ = True
        return None

    def save_last(self, net) -> None:
        """Write ``last.pt`` (weights, optimizer, history) atomically."""
        state = {
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "history": json.dumps(list(net.history)),
        }
        with atomic_path(os.path.join(self.dirname_, self.LAST)) as tmp:
            torch.save(state, tmp)

    def on_epoch_end(self, net, **kwargs) -> None:
        row = net.history[-1]
        if isinstance(self.monitor, str) and self.monitor not in row:
            do_checkpoint = True
        elif self.monitor is None:
            do_checkpoint = True
        elif callable(self.monitor):
            do_checkpoint = self.monitor(net)
        else:
            do_checkpoint = row[self.monitor]
        if self.event_name is not None:
            net.history.record(self.event_name, bool(do_checkpoint))
        if do_checkpoint:
            self.save_model(net)
            self._sink(f"A checkpoint was triggered in epoch {len(net.history)}.", net.verbose)
        if self.dirname:
            self.save_last(net)

    def on_train_end(self, net, **kwargs) -> None:
        if self.load_best and self.saved_:
            # weights only: the history keeps every epoch, not just those up to the best
            files = self.get_formatted_files(net)
            net.load_params(f_params=files["f_params"], use_safetensors=self.use_safetensors)
            self._sink("Restored the weights of the best epoch.", net.verbose)
        self.remove_temporary()
        self.saved_ = False
        self.resumed_ = False

    def remove_temporary(self) -> None:
        """Remove this fit's temporary directory, if it has one (no ``dirname``)."""
        if not self.dirname and self.dirname_ is not None:
            shutil.rmtree(self.dirname_, ignore_errors=True)
            self.dirname_ = None


class TimeLimit(Callback):
    """Stop training before it runs past ``minutes`` of wall time.

    After each epoch it stops the fit (as skorch's ``EarlyStopping`` does) when one more
    epoch as long as the longest so far would end past the limit, counted from the start
    of the fit, so training ends at or before ``minutes`` (validation and callbacks
    included, the first epoch always runs). For training to a budget, e.g. against a
    peer trained for the same wall time:
    ``callbacks=[("time_limit", TimeLimit(20))]``. A schedule planned over
    ``max_epochs`` (``OneCycleLRScheduler``) is cut where the limit falls; the
    checkpoint still restores its best epoch. ``stopped_epoch_`` is the last epoch run
    when the limit stopped the fit, else ``None``.
    """

    def __init__(self, minutes: float, sink: Callable | None = print) -> None:
        self.minutes = minutes
        self.sink = sink

    # checked by the estimator's fit before any data is converted, and here
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "minutes": [Interval(float, 0, closed="neither")],
        "sink": [callable, None],
    }

    def initialize(self):
        check_params(self.get_params(), self._parameter_constraints, "TimeLimit")
        self.stopped_epoch_ = None
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        self.stopped_epoch_ = None
        self.start_ = time.monotonic()
        self.longest_ = 0.0
        self.last_ = self.start_

    def on_epoch_end(self, net, **kwargs) -> None:
        now = time.monotonic()
        self.longest_ = max(self.longest_, now - self.last_)
        self.last_ = now
        if now - self.start_ + self.longest_ > self.minutes * 60:
            self.stopped_epoch_ = len(net.history)
            if self.sink is not None:
                self.sink(
                    f"Stopping after epoch {self.stopped_epoch_}: another epoch would end past "
                    f"the time limit of {self.minutes:g} minutes."
                )
            raise KeyboardInterrupt
