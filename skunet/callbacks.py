"""The callbacks bundled with :class:`skunet.UNetSegmenter`.

Each one is a small skorch callback that a user can replace or remove by name
(``callbacks__iou=None``):

- :class:`CyclicLRScheduler` (``lr_scheduler``): ``CyclicLR`` stepping every batch, with
  step sizes derived from the batches per epoch;
- :class:`IoUScoring` (``iou``): validation IoU counted from the validation batches the
  net already computes (no second prediction pass, no cached outputs);
- :class:`SegmentationCheckpoint` (``checkpoint``): best epoch saved atomically into a
  directory unique to the fit, restored when training ends.

:class:`ProgressBar` is skorch's bar with the right number of batches per epoch (patches
per image and whole-image validation batches make skorch's own count wrong); it is on by
default in notebooks. :class:`LivePlot` redraws loss curves and predictions every epoch.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback, Checkpoint, EpochScoring, Freezer, LRScheduler
from skorch.callbacks import ProgressBar as _SkorchProgressBar
from skorch.history import History
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

from .dataset import class_target
from .metrics import confusion_matrix, iou_from_confusion
from .models.blocks import center_crop
from .persistence import atomic_path
from .plotting import plot_training
from .progress import in_notebook, use_widgets

__all__ = [
    "CyclicLRScheduler",
    "EncoderFreezer",
    "IoUScoring",
    "LivePlot",
    "OneCycleLRScheduler",
    "ProgressBar",
    "SegmentationCheckpoint",
]


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


class _PlannedLRScheduler(LRScheduler):
    """A torch scheduler stepped after every training batch, whose arguments depend on
    the length of the run: they are derived (:meth:`resolved_kwargs`) when the first
    epoch starts, once the batches per epoch are known. A run that continues an earlier
    one (``partial_fit``, ``warm_start``, a resumed checkpoint) picks the schedule up
    where the history says it was."""

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
            policy=CyclicLR,
            step_every="batch",
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
            policy=OneCycleLR,
            step_every="batch",
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


class SegmentationCheckpoint(Checkpoint):
    """Checkpoint of the best epoch, written atomically, restored at the end of ``fit``.

    Without ``dirname`` every fit writes into a fresh temporary directory
    (``dirname_``), so parallel fits never share a file and nothing lands in the working
    directory; that directory is removed after a fit that ends normally.

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
        epoch).
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
        if not self.dirname and self.dirname_ is not None:
            shutil.rmtree(self.dirname_, ignore_errors=True)
            self.dirname_ = None
        self.saved_ = False
        self.resumed_ = False


class ProgressBar(_SkorchProgressBar):
    """skorch's per-epoch progress bar, counting the batches the net really runs.

    In a notebook it is a widget when ipywidgets is installed and a text bar otherwise
    (skorch's own bar fails there without ipywidgets).
    """

    def _use_notebook(self) -> bool:
        return bool(self.detect_notebook) and use_widgets()

    def _get_batches_per_epoch_phase(self, net, dataset, training):
        if dataset is None:
            return 0
        return len(net.get_iterator(dataset, training=training))


class LivePlot(Callback):
    """Loss curves and predictions of fixed validation images, redrawn after each epoch.

    The figure (:func:`skunet.plotting.plot_training`) shows training and validation
    loss with validation IoU, then input / truth / prediction of the first ``n_images``
    validation images (training images without a validation split). In a notebook it
    is displayed once and updated in place; elsewhere, and always when ``path`` is
    given, it is written to a PNG file, replaced atomically.

    Parameters
    ----------
    n_images : int, default=3
    path : str or None, default=None
        PNG file; None writes ``live.png`` outside notebooks and no file inside them.
    every : int, default=1
        Redraw every ``every`` epochs (and after the last).
    """

    def __init__(self, n_images: int = 3, path: str | None = None, every: int = 1) -> None:
        self.n_images = n_images
        self.path = path
        self.every = every

    def initialize(self):
        if self.n_images < 1 or self.every < 1:
            raise ValueError(
                f"LivePlot needs n_images >= 1 and every >= 1, got {self.n_images}, {self.every}"
            )
        self.handle_ = None
        self.figure_ = None
        self.path_ = self.path or (None if in_notebook() else "live.png")
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        self.samples_ = None

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs) -> None:
        epoch = len(net.history)
        if epoch % self.every and epoch < net.max_epochs:
            return
        if self.samples_ is None:
            data = dataset_valid if dataset_valid is not None else dataset_train
            self.samples_ = [data[i] for i in range(min(self.n_images, len(data)))]
        images = [im for im, _ in self.samples_]
        pred = net._predict_images(images, finalize=net._classes)
        shown = [im[0] if im.shape[0] == 1 else np.moveaxis(im, 0, -1) for im in images]
        truth = [t for _, t in self.samples_]
        self.figure_ = plot_training(net, shown, truth, pred)
        if self.path_ is not None:
            with atomic_path(self.path_) as tmp:
                self.figure_.savefig(tmp, format="png", dpi=80)
        if in_notebook():
            self._show(self.figure_)

    def _show(self, fig) -> None:
        from IPython.display import Image, display

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        image = Image(data=buffer.getvalue())
        if self.handle_ is None:
            self.handle_ = display(image, display_id=True)
        else:
            self.handle_.update(image)
