"""How a :class:`~skunet.UNetSegmenter` trains: skorch's hooks for images of any size.

:class:`TrainingMixin` validates the data (:mod:`skunet.intake.validation`), turns masks into
class maps (:mod:`skunet.targets`), builds the network with the channels of ``X`` and
the outputs ``n_classes`` needs, picks the padding-aware loss, and feeds skorch's loop
random mirrored patches (:mod:`skunet.intake.sampling`; of Dask / Zarr images, read window by
window, :mod:`skunet.intake.windows`) for training and whole images for validation; a
non-finite loss stops training and restores the best epoch.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import warnings
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Freezer
from torch.utils.data import Subset

from ..callbacks.training import SegmentationCheckpoint
from ..constraints import check_params
from ..intake.sampling import ImageSet, PatchDataset, WholeImageCollate
from ..intake.validation import check_images, check_masks, check_target
from ..losses import PaddedBCEWithLogitsLoss, PaddedCrossEntropyLoss
from ..persistence import FITTED_RECORDS
from ..targets import decoding
from ..tasks import task_of
from ..tiling import Geometry
from .lr_finder import LRRangeResult, lr_range_test
from .training_set import training_set

__all__ = ["TrainingMixin"]

# stands for callbacks that set_params replaced one by one since they were built
_REPLACED = object()


class TrainingMixin:
    """skorch ``NeuralNet`` hooks of :class:`~skunet.UNetSegmenter` (``fit``,
    ``partial_fit``, ``initialize_module`` / ``_criterion``, ``get_iterator``,
    ``train_step``, the "did you mean" hints of parameter validation) and the learning
    rate range test."""

    def _validate_params(self) -> None:
        try:
            super()._validate_params()
        except ValueError as exc:
            known = [k for k in self._get_param_names() if k not in self._params_to_validate]
            known += self.prefixes_
            hints = []
            for key in sorted(self._params_to_validate):
                if not any(key.startswith(p) for p in self.prefixes_):
                    close = difflib.get_close_matches(key, known, n=1)
                    if close:
                        hints.append(f"{key}: did you mean {close[0]}?")
            raise ValueError("\n".join([str(exc), *hints])) from None

    def _check_argument_names(self) -> None:
        """skorch's check of the argument names, run before ``initialize`` has registered
        the module, criterion and optimizer as prefixes (so that ``fit`` names a
        misspelt argument before it converts any data)."""
        registered = self.prefixes_
        self.prefixes_ = sorted({*registered, "module", "criterion", "optimizer"})
        try:
            self._validate_params()
        finally:
            self.prefixes_ = registered

    def _check_own_params(self) -> None:
        """Unknown or misspelt arguments (skorch's check, with "did you mean" hints),
        every parameter of :attr:`_parameter_constraints`, then the pairs that depend on
        each other; run first thing in ``fit``, before any image or mask is converted."""
        self._check_argument_names()
        check_params(self.get_params(deep=False), self._parameter_constraints)
        check_target(self.target, self.n_classes)
        # the callbacks' own parameters, as routed (callbacks__<name>__<param>)
        for name, callback in self._named_callbacks():
            table = getattr(callback, "_parameter_constraints", None)
            if table is None or isinstance(callback, type):
                continue
            given = {**callback.get_params(), **self.get_params_for(f"callbacks__{name}")}
            check_params(given, table, type(callback).__name__, f"callbacks__{name}__")

    def _named_callbacks(self) -> list[tuple[str, Any]]:
        """``(name, callback)`` of the default and the user's callbacks, as skorch names
        them (a bare callback by its class name), before ``initialize``."""
        user = self.callbacks if isinstance(self.callbacks, (list, tuple)) else []
        named = []
        for item in [*self._default_callbacks, *user]:
            name, callback = item if isinstance(item, tuple) else (None, item)
            name = name or getattr(callback, "__name__", type(callback).__name__)
            # replaced by set_params(callbacks__<name>=...)
            named.append((name, self.__dict__.get(f"callbacks__{name}", callback)))
        return named

    def _n_outputs(self) -> int:
        given = self.get_params_for("module").get("out_channels")
        if given is None and isinstance(self.module, torch.nn.Module):
            given = getattr(self.module, "out_channels", None)
        if given is not None:
            return int(given)
        return 1 if self.n_classes == 2 else self.n_classes

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module):
            try:
                accepted = inspect.signature(self.module).parameters
            except (TypeError, ValueError):
                accepted = {}
            n_in = getattr(self, "n_channels_in_", None)
            if "in_channels" in accepted and "in_channels" not in kwargs and n_in is not None:
                kwargs["in_channels"] = n_in
            if "out_channels" in accepted and "out_channels" not in kwargs:
                kwargs["out_channels"] = self._n_outputs()
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self._channels_last():
            self.module_ = self.module_.to(memory_format=torch.channels_last)
        geometry = self.geometry_
        if not geometry.accepts_patch(self.patch_size):
            below, above = geometry.nearest_patch_sizes(self.patch_size)
            size = self.patch_size + 2 * geometry.context
            options = f"{below} or {above}" if below else str(above)
            raise ValueError(
                f"patch_size={self.patch_size} gives {size}-pixel training windows "
                f"({geometry.context} px of context each side), which "
                f"{type(self.module_).__name__} does not accept; use patch_size={options}"
            )
        return self

    @property
    def geometry_(self) -> Geometry:
        """Window sizes for the network and the current ``padding`` (see :mod:`skunet.tiling`)."""
        # a network wrapped for distributed training keeps the original as ``.module``
        module = self.module_
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        return Geometry(module, self.padding)

    def initialize_criterion(self):
        criterion = self.criterion
        if criterion is None:
            binary = self._n_outputs() == 1
            criterion = PaddedBCEWithLogitsLoss if binary else PaddedCrossEntropyLoss
        self.criterion_ = self.initialized_instance(criterion, self.get_params_for("criterion"))
        return self

    # -------------------------------------------------------------------- fit
    def _fit_data(self, X: Any, y: Any, continuing: bool) -> ImageSet:
        self._check_own_params()
        images = check_images(X, as_float=True, lazy=True)
        masks = check_masks(y, images, n_classes=self.n_classes, target=self.target)
        n_channels = images[0].shape[0]
        given = self.get_params_for("module").get("in_channels")
        if given is not None and given != n_channels:
            raise ValueError(
                f"module__in_channels={given} but the images have {n_channels} channel(s)"
            )
        if continuing and getattr(self, "n_channels_in_", n_channels) != n_channels:
            hint = (  # a gray model, colour images: what to do about it
                "; skunet.adaptation.adapt_input(model, 'haematoxylin') adapts a gray model "
                "to RGB H&E or bright-field images before training on them"
                if self.n_channels_in_ == 1 and n_channels == 3
                else ""
            )
            raise ValueError(
                f"the model was fitted on {self.n_channels_in_}-channel images; "
                f"X[0] has {n_channels}{hint}"
            )
        if self.train_split is not None and len(images) < 2:
            raise ValueError(
                f"X has {len(images)} image; holding out validation images needs at least "
                "2 (or pass train_split=None)"
            )
        self.n_channels_in_ = n_channels
        self.classes_ = np.arange(self.n_classes)
        # masks kept for the calibration: objects of instance targets, cells of membranes
        data = training_set(
            images,
            masks,
            normalize=self.normalize,
            n_classes=self.n_classes,
            target=self.target,
            keep_labels=decoding(self.target, self._membranes()).instance_labels,
        )
        self._warn_sparse_sampling(data)
        return data

    def _warn_sparse_sampling(self, data: ImageSet) -> None:
        """Warn when an epoch's patches would see under 1 % of a large (lazy) image:
        ``patches_per_image`` counts per image, whatever its size."""
        for i in data.lazy_indices:
            _, h, w = data.images[i].shape
            area, patch = h * w, self.patch_size**2
            if self.patches_per_image * patch < 0.01 * area:
                warnings.warn(
                    f"X[{i}] has {area / 1e6:.1f} megapixels, of which patches_per_image="
                    f"{self.patches_per_image} patch(es) of {self.patch_size} px see "
                    f"{100 * self.patches_per_image * patch / area:.2g} % per epoch; "
                    f"patches_per_image={-(-area // patch)} would cover it once",
                    UserWarning,
                    stacklevel=3,
                )

    def initialize_callbacks(self):
        super().initialize_callbacks()
        self._callbacks_built_from = self.callbacks
        return self

    def set_params(self, **params: Any):
        """skorch's ``set_params``; a ``callbacks__NAME`` that names no callback of a built
        model is a ``ValueError`` naming those it has (skorch fails to unpack it).

        skorch puts a callback replaced on a built model (``callbacks__NAME=cb`` or
        ``None``) into ``callbacks_`` as given, neither built nor left out, and a warm
        start or ``partial_fit`` does not build them again; so the callbacks are built
        again before the next training (:meth:`_use_new_callbacks`). A callback set to
        None and left out there can be set again."""
        replaced = False
        if getattr(self, "callbacks_", None) is not None and "callbacks" not in params:
            names = [name for name, _ in self.callbacks_]
            for key in list(params):
                if not key.startswith("callbacks__"):
                    continue
                name, _, rest = key.removeprefix("callbacks__").partition("__")
                replaced = replaced or not rest
                if name in names:
                    continue
                if not rest and key in vars(self) and vars(self)[key] is None:
                    # set to None earlier, and left out when the callbacks were built
                    vars(self)[key] = params.pop(key)
                    continue
                raise ValueError(
                    f"{key}: the model has no callback named {name!r} (it has "
                    f"{', '.join(names)}); add one with callbacks=[..., ({name!r}, cb)]"
                )
        out = super().set_params(**params)
        if replaced:
            self._callbacks_built_from = _REPLACED
        return out

    def _use_new_callbacks(self) -> None:
        """Build the callbacks again when ``set_params`` replaced them, or one of them,
        since they were built: skorch builds them from the list it had before the new one
        is stored, and a warm start or ``partial_fit`` does not build them again, so a new
        ``TimeLimit`` would otherwise be ignored and a callback set to None be called."""
        if self.callbacks is not getattr(self, "_callbacks_built_from", self.callbacks):
            self.initialize_callbacks()

    def fit(self, X: Any, y: Any = None, **fit_params: Any):
        """Train on images ``X`` and masks ``y`` (re-initialising unless ``warm_start``; a
        re-initialised network drops an earlier calibration, ``instance_params_``).

        ``X`` and ``y`` are lists of arrays, or stacks; items (or ``X`` and ``y``
        themselves) may be Dask or Zarr arrays larger than memory, of which each training
        patch reads only its window (:mod:`skunet.intake.windows`).
        """
        continuing = self.warm_start and self.initialized_
        if continuing:
            self._use_new_callbacks()
        data = self._fit_data(X, y, continuing)
        if not continuing:
            # a new network: an earlier fit's calibrated thresholds are not its own
            for name in (*FITTED_RECORDS, "calibration_"):
                self.__dict__.pop(name, None)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        return super().fit(data, None, **fit_params)

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any):
        """Continue training on ``X`` / ``y`` without re-initialising the network."""
        if self.initialized_:
            self._use_new_callbacks()
        if not isinstance(X, ImageSet):
            X = self._fit_data(X, y, continuing=self.initialized_)
        try:
            super().partial_fit(X, None, **fit_params)
        except BaseException:
            # skorch ends a fit that raised without on_train_end
            for _, callback in getattr(self, "callbacks_", None) or []:
                if isinstance(callback, SegmentationCheckpoint):
                    callback.remove_temporary()
            raise
        problem = self.__dict__.pop("nonfinite_loss_", None)
        if problem is not None:
            weights_ok = all(torch.isfinite(p).all() for p in self.module_.parameters())
            if not weights_ok:
                raise FloatingPointError(
                    f"{problem}, before any epoch ended with finite weights, so there is "
                    f"nothing to restore; lower lr (now {self.lr}) or check the images"
                )
            warnings.warn(
                f"{problem}: training stopped and the weights of the best epoch were "
                f"restored; a lower lr (now {self.lr}) may train further",
                RuntimeWarning,
                stacklevel=2,
            )
        return self

    def get_split_datasets(self, X, y=None, **fit_params):
        dataset_train, dataset_valid = super().get_split_datasets(X, y, **fit_params)
        if isinstance(dataset_valid, Subset) and isinstance(dataset_valid.dataset, ImageSet):
            lazy = set(dataset_valid.dataset.lazy_indices)
            if held := [i for i in dataset_valid.indices if i in lazy]:
                raise ValueError(
                    f"X[{held[0]}] is a Dask / Zarr image and train_split put it among the "
                    "validation images, which are predicted whole in memory; train on "
                    "such images with train_split=None, then judge the model with score "
                    "or calibrate_instances on held-out images in memory"
                )
        return dataset_train, dataset_valid

    def _membranes(self) -> bool:
        """A binary model of a task whose background is membrane between cells (EM)."""
        return self.n_classes == 2 and task_of(self).membranes

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        if not torch.isfinite(step["loss"]):
            epoch, n = len(self.history), len(self.history[-1, "batches"])  # includes this one
            self.nonfinite_loss_ = (
                f"the training loss became {step['loss'].item()} in epoch {epoch}, batch {n}"
            )
            raise KeyboardInterrupt  # skorch's way to stop: on_train_end restores the best
        return step

    def _weight_map(self):
        """The criterion's per-pixel weights of a class map, if it wants them
        (:class:`~skunet.losses.WeightMapLoss`)."""
        return getattr(getattr(self, "criterion_", None), "weight_map", None)

    def get_iterator(self, dataset, training: bool = False):
        if training:
            kwargs = self.get_params_for("iterator_train")
            kwargs.setdefault("shuffle", True)
            dataset = PatchDataset(
                dataset,
                self.geometry_,
                self.patch_size,
                self.patches_per_image,
                self.augment,
                weight_map=self._weight_map(),
            )
            iterator = self.iterator_train
            kwargs.setdefault("batch_size", self.batch_size)
        else:
            kwargs = self.get_params_for("iterator_valid")
            kwargs.setdefault("collate_fn", WholeImageCollate(self.geometry_, self._weight_map()))
            # whole images of any size: one per batch keeps memory bounded
            kwargs.setdefault("batch_size", 1)
            iterator = self.iterator_valid
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        # DataLoader defaults: patches are cut in the main process (num_workers=0: on a
        # few cores a worker would take a core from the network's threads); pinned
        # memory for CUDA; workers, when asked for, live across epochs.
        kwargs.setdefault("pin_memory", self._device().type == "cuda")
        if kwargs.get("num_workers", 0) > 0:
            kwargs.setdefault("persistent_workers", True)
        return iterator(dataset, **kwargs)

    def lr_range_test(
        self,
        X: Any,
        y: Any,
        start_lr: float = 1e-6,
        end_lr: float = 10.0,
        num_iter: int = 100,
        **kwargs: Any,
    ) -> LRRangeResult:
        """Train a copy for ``num_iter`` batches while the rate grows from ``start_lr`` to
        ``end_lr`` exponentially; stops early when the loss diverges.

        The estimator's own weights, optimizer state and history are left as they were
        (fitted or not). Returns an :class:`~skunet.fitting.lr_finder.LRRangeResult` with ``lrs``,
        ``losses`` (smoothed), ``suggestion`` (steepest descent) and ``.plot()``.
        ``smoothing`` (0.05) and ``diverge`` (4.0) tune the smoothing and the stop.
        """
        probe = copy.deepcopy(self)  # the estimator itself is never touched
        data = probe._fit_data(X, y, continuing=probe.initialized_)
        if not probe.initialized_:
            probe.initialize()
        for _, cb in probe.callbacks_:  # a frozen encoder stays frozen
            if isinstance(cb, Freezer):
                cb.on_epoch_begin(probe)

        def step(batch, lr: float) -> float:
            for group in probe.optimizer_.param_groups:
                group["lr"] = lr
            # skorch's own step (it sets training mode), not the one that stops on NaN
            return NeuralNet.train_step(probe, batch)["loss"].item()

        def batches():  # epoch after epoch
            while True:
                yield from probe.get_iterator(data, training=True)

        return lr_range_test(step, batches(), start_lr, end_lr, num_iter, **kwargs)
