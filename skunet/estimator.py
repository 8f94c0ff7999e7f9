"""``UNetSegmenter``: a skorch ``NeuralNet`` that segments lists of images.

The data flow: ``fit`` validates images and masks (:mod:`skunet.validation`), turns masks
into class maps (:mod:`skunet.targets`), splits whole images into train / validation,
trains on random mirrored patches (:mod:`skunet.dataset`) with padding-aware losses
(:mod:`skunet.losses`); ``predict_proba`` mirrors each image to the size the network
needs, runs it, and crops back (:mod:`skunet.tiling`).
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from skorch import NeuralNet
from skorch.dataset import ValidSplit

from .callbacks import (
    CyclicLRScheduler,
    EncoderFreezer,
    IoUScoring,
    ProgressBar,
    SegmentationCheckpoint,
)
from .dataset import ImageSet, PatchDataset, WholeImageCollate
from .inference import (
    InferenceSettings,
    autocast_context,
    autocast_dtype,
    classes,
    expand,
    predict_compact,
)
from .instances import label_components, watershed_instances
from .losses import PaddedBCEWithLogitsLoss, PaddedCrossEntropyLoss
from .lr_finder import LRRangeResult, lr_range_test
from .metrics import iou_score
from .models import UNet, VGG16UNet
from .persistence import load_segmenter, save_segmenter
from .preprocessing import percentile_normalize
from .progress import in_notebook
from .targets import mask_classes
from .tiling import Geometry
from .validation import check_images, check_masks, check_target

__all__ = ["UNetSegmenter"]

_AUTOCAST_SETTINGS = ("auto", "bfloat16", "float16")


def _stack_or_list(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    return arrays


class UNetSegmenter(NeuralNet):
    """Semantic segmentation of images of any size with a U-Net, as an sklearn estimator.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=skunet.models.UNet
        ``in_channels`` / ``out_channels`` are filled in from ``X`` and ``n_classes``
        unless given as ``module__in_channels`` / ``module__out_channels``.
    n_classes : int, default=2
        Two classes train one logit with binary cross-entropy; more train ``n_classes``
        logits with cross-entropy. Both losses skip padding.
    target : {"mask", "boundary"}, default="mask"
        ``"mask"``: ``y`` holds class indices (with 2 classes any value > 0 is
        foreground). ``"boundary"``: ``y`` holds instance labels, trained as
        0 background / 1 interior / 2 boundary (``n_classes=3``).
    patch_size : int, default=256
        Side of the random training patches; smaller images are mirrored around.
    padding : int, default=16
        Mirrored context around each patch (and around images at prediction) that the
        loss ignores. "Valid" networks use their own border instead.
    patches_per_image : int, default=1
        Patches drawn from every training image per epoch.
    augment : bool, Augment or callable, default=True
        ``True``: random flips and 90-degree rotations. An :class:`~skunet.augment.Augment`
        adds elastic deformation, affine jitter, noise, brightness / contrast; any
        ``f(image, labels) -> (image, labels)`` on ``(C, h, w)`` / ``(h, w)`` arrays works.
        Training windows are augmented whole (context included), before weight maps.
    random_state : int or None, default=None
        Seeds torch (weights, patches, shuffling, dropout) at the start of ``fit``, so
        that two fits on the CPU give identical weights.
    tile_size : int or None, default=None
        Network input size for tiled prediction; images whose side exceeds
        ``tile_size - 2 * padding`` are predicted in overlapping tiles. None: the side
        of a square holding a training batch's pixels (``batch_size`` windows of
        ``patch_size + 2 * padding``), so prediction needs less memory than training.
    tile_overlap : float, default=0.25
        Fraction of a tile shared with its neighbour.
    blend : {"gaussian", "constant"}, default="gaussian"
        Weighting of overlapping tiles.
    normalize : {None, "percentile"}, default=None
        None: integer images are scaled to [0, 1] by their dtype's range and float
        images used as they are. ``"percentile"``: each image and channel has its 1st and
        99.8th percentiles mapped to 0 and 1 (:func:`~skunet.preprocessing.percentile_normalize`),
        in ``fit`` and in every prediction, so a saved model carries its preprocessing.
    tta : bool, default=False
        Average predictions over horizontal and vertical flips.
    postprocess : callable or None, default=None
        ``f(classes (H, W) uint8) -> classes`` applied to every predicted class map
        (``predict``, ``score``, scorers, plots; not ``predict_proba``), e.g.
        :func:`skunet.instances.largest_object` for images of one object. A module-level
        function is stored in model files by name.
    channels_last : bool or None, default=None
        Run the network in channels-last memory format, for training and prediction.
        None: on for skunet's own networks (1.4-1.7x faster convolutions on a CPU), off
        for other modules (some reshape tensors in ways channels-last breaks).
    autocast : bool or {"auto", "bfloat16", "float16"}, default=False
        Mixed precision for training and prediction (True: bfloat16 on the CPU, float16
        on CUDA; ``"auto"``: bfloat16 where the device computes it natively, i.e. CUDA
        GPUs that support it and CPUs with AVX-512 BF16 or AMX, else float32). The
        network runs under ``torch.autocast``; losses, scores and weights stay float32.
        Training in float16 scales the loss (``torch.amp.GradScaler``); bfloat16 needs
        no scaling. On a CPU with AVX-512 BF16 a U-Net training step is about 1.9x
        faster in bfloat16; without it bfloat16 is emulated and slower.
    criterion : loss class or None, default=None
        None picks :class:`~skunet.losses.PaddedBCEWithLogitsLoss` for one output
        channel, else :class:`~skunet.losses.PaddedCrossEntropyLoss`.
    optimizer, lr, max_epochs, batch_size, train_split, callbacks, device, ... :
        As in ``skorch.NeuralNet``. ``lr`` is the peak of the cyclic learning rate.
        ``train_split`` holds out whole images (default: 20 % of them, fixed seed);
        set it to None inside ``GridSearchCV``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_channels_in_ : int
        Channels of the training images.
    module_, criterion_, optimizer_, history_ :
        As in skorch.

    Notes
    -----
    Bundled callbacks, each replaceable or removable (``callbacks__<name>=None``):
    ``freezer`` (:class:`~skunet.callbacks.EncoderFreezer`, a skorch ``Freezer("conv*")``:
    the VGG16 encoder of :class:`~skunet.models.VGG16UNet`; a no-op for the U-Net, a
    warning for other modules with ``conv*`` parameters), ``lr_scheduler``
    (:class:`~skunet.callbacks.CyclicLRScheduler`, per batch), ``iou``
    (:class:`~skunet.callbacks.IoUScoring`, ``valid_iou``) and ``checkpoint``
    (:class:`~skunet.callbacks.SegmentationCheckpoint`, best ``valid_iou``); in a notebook
    also ``progress_bar`` (:class:`~skunet.callbacks.ProgressBar`) unless ``verbose=0``.

    Without ``normalize``, integer images are scaled to [0, 1] by their dtype's range and
    float images are used as they are (see also :class:`skunet.preprocessing.ImageNormalizer`
    for pipelines).

    Examples
    --------
    >>> import numpy as np
    >>> from skunet import UNetSegmenter
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.random((40, 36)).astype(np.float32) for _ in range(4)]
    >>> y = [(x > 0.5).astype(np.uint8) for x in X]
    >>> seg = UNetSegmenter(module__depth=2, module__base_channels=4, patch_size=24,
    ...                     padding=4, max_epochs=1, verbose=0, random_state=0)
    >>> seg.fit(X, y).predict(X).shape
    (4, 40, 36)
    >>> seg.predict_proba(X[:1])[0].shape
    (2, 40, 36)
    """

    def __init__(
        self,
        module: type[torch.nn.Module] | torch.nn.Module = UNet,
        *,
        n_classes: int = 2,
        target: str = "mask",
        patch_size: int = 256,
        padding: int = 16,
        patches_per_image: int = 1,
        augment: bool | Callable = True,
        random_state: int | None = None,
        tile_size: int | None = None,
        tile_overlap: float = 0.25,
        blend: str = "gaussian",
        normalize: str | None = None,
        tta: bool = False,
        postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        channels_last: bool | None = None,
        autocast: bool | str = False,
        criterion: type[torch.nn.Module] | None = None,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        lr: float = 1e-3,
        max_epochs: int = 20,
        batch_size: int = 8,
        train_split: Callable | None = ValidSplit(0.2, random_state=0),  # noqa: B008
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            **kwargs,
        )
        self.n_classes = n_classes
        self.target = target
        self.patch_size = patch_size
        self.padding = padding
        self.patches_per_image = patches_per_image
        self.augment = augment
        self.random_state = random_state
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.blend = blend
        self.normalize = normalize
        self.tta = tta
        self.postprocess = postprocess
        self.channels_last = channels_last
        self.autocast = autocast

    # ------------------------------------------------------------------ set-up
    @property
    def _default_callbacks(self):
        skorch_defaults = super()._default_callbacks
        ours = [
            ("freezer", EncoderFreezer("conv*")),
            ("lr_scheduler", CyclicLRScheduler()),
            ("iou", IoUScoring()),
            ("checkpoint", SegmentationCheckpoint()),
        ]
        if self.verbose and in_notebook():  # a bar per epoch, as notebook users expect
            ours.append(("progress_bar", ProgressBar()))
        # after skorch's scoring callbacks, before its print_log
        return (
            [cb for cb in skorch_defaults if cb[0] != "print_log"]
            + ours
            + [cb for cb in skorch_defaults if cb[0] == "print_log"]
        )

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

    def _check_own_params(self) -> None:
        check_target(self.target, self.n_classes)
        for name, low in (("patch_size", 1), ("padding", 0), ("patches_per_image", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.augment, bool) or callable(self.augment)):
            raise TypeError(f"augment must be a bool or a callable, got {self.augment!r}")
        if self.postprocess is not None and not callable(self.postprocess):
            raise TypeError(f"postprocess must be None or a callable, got {self.postprocess!r}")
        if not isinstance(self.autocast, bool) and self.autocast not in _AUTOCAST_SETTINGS:
            raise ValueError(
                f"autocast must be True, False, 'auto', 'bfloat16' or 'float16', "
                f"got {self.autocast!r}"
            )

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
    def _check_images(self, X: Any, fitted: bool = True) -> list[np.ndarray]:
        """Validated ``(C, H, W)`` images, normalised as ``normalize`` says.

        For prediction (``fitted``) images keep their dtype unless normalised, so very
        large ones are converted tile by tile.
        """
        if self.normalize not in (None, "percentile"):
            raise ValueError(f"normalize={self.normalize!r}; use None or 'percentile'")
        n_channels = self.n_channels_in_ if fitted else None
        images = check_images(X, n_channels=n_channels, as_float=not fitted)
        if self.normalize == "percentile":
            images = [percentile_normalize(im) for im in images]
        return images

    def _fit_data(self, X: Any, y: Any, continuing: bool) -> ImageSet:
        self._check_own_params()
        images = self._check_images(X, fitted=False)
        masks = check_masks(y, images, n_classes=self.n_classes, target=self.target)
        n_channels = images[0].shape[0]
        given = self.get_params_for("module").get("in_channels")
        if given is not None and given != n_channels:
            raise ValueError(
                f"module__in_channels={given} but the images have {n_channels} channel(s)"
            )
        if continuing and getattr(self, "n_channels_in_", n_channels) != n_channels:
            raise ValueError(
                f"the model was fitted on {self.n_channels_in_}-channel images; "
                f"X[0] has {n_channels}"
            )
        if self.train_split is not None and len(images) < 2:
            raise ValueError(
                f"X has {len(images)} image; holding out validation images needs at least "
                "2 (or pass train_split=None)"
            )
        self.n_channels_in_ = n_channels
        self.classes_ = np.arange(self.n_classes)
        targets = [mask_classes(m, self.n_classes, self.target) for m in masks]
        return ImageSet(images, targets)

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> UNetSegmenter:
        """Train on images ``X`` and masks ``y`` (re-initialising unless ``warm_start``)."""
        continuing = self.warm_start and self.initialized_
        data = self._fit_data(X, y, continuing)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        return super().fit(data, None, **fit_params)

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any):
        """Continue training on ``X`` / ``y`` without re-initialising the network."""
        if not isinstance(X, ImageSet):
            X = self._fit_data(X, y, continuing=self.initialized_)
        super().partial_fit(X, None, **fit_params)
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

    def _device(self) -> torch.device:
        """``device``, or where the network's weights are when something else places
        them (``device=None``, e.g. Hugging Face Accelerate)."""
        if self.device is not None:
            return torch.device(self.device)
        module = getattr(self, "module_", None)
        first = next(module.parameters(), None) if module is not None else None
        return first.device if first is not None else torch.device("cpu")

    def _channels_last(self) -> bool:
        if self.channels_last is None:  # on for the networks known to support it
            own = (UNet, VGG16UNet)
            return self.module in own or isinstance(self.module, own)
        return bool(self.channels_last)

    def infer(self, x, **fit_params):
        if self._channels_last() and isinstance(x, torch.Tensor):
            x = x.to(self._device()).contiguous(memory_format=torch.channels_last)
        if not self.autocast:
            return super().infer(x, **fit_params)
        with autocast_context(self._device(), self.autocast):
            y = super().infer(x, **fit_params)
        return y.float() if isinstance(y, torch.Tensor) else y

    def initialize_optimizer(self, *args, **kwargs):
        self.grad_scaler_ = None  # a new optimizer starts a new loss scale
        return super().initialize_optimizer(*args, **kwargs)

    def _grad_scaler(self) -> torch.amp.GradScaler | None:
        """Loss scaling for float16 training (created on first use, per fit)."""
        if autocast_dtype(self._device(), self.autocast) != torch.float16:
            return None
        if self.grad_scaler_ is None:
            self.grad_scaler_ = torch.amp.GradScaler(self._device().type)
        return self.grad_scaler_

    def train_step_single(self, batch, **fit_params):
        scaler = self._grad_scaler()
        if scaler is None:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = batch
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler.scale(loss).backward()
        # callbacks' on_grad_computed (e.g. gradient clipping) see the true gradients
        for name in self._optimizers:
            scaler.unscale_(getattr(self, name + "_"))
        return {"loss": loss, "y_pred": y_pred}

    def _step_optimizer(self, step_fn):
        scaler = self._grad_scaler()
        if scaler is None or step_fn is None:
            return super()._step_optimizer(step_fn)
        step_fn()  # GradScaler.step takes no closure: one forward / backward, then step
        for name in self._optimizers:
            scaler.step(getattr(self, name + "_"))
        scaler.update()

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

    # ---------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_") or not getattr(self, "initialized_", False):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) first"
            )

    def _inference_settings(self, geometry: Geometry) -> InferenceSettings:
        window = self.patch_size + 2 * geometry.context
        return InferenceSettings(
            device=self._device(),
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            blend=self.blend,
            tta=self.tta,
            channels_last=self._channels_last(),
            autocast=self.autocast,
            pixels_per_batch=self.batch_size * window**2,
            progress=bool(self.verbose),
        )

    def _predict_images(self, images: list[np.ndarray], finalize=None) -> list[np.ndarray]:
        """Compact probabilities of validated images (see :mod:`skunet.inference`)."""
        geometry = self.geometry_
        settings = self._inference_settings(geometry)
        window = self.patch_size + 2 * geometry.context
        self._set_training(False)
        return predict_compact(
            self.module_,
            images,
            geometry,
            settings,
            # one batch of tiles holds no more pixels than a training batch
            default_tile=max(window, math.isqrt(settings.pixels_per_batch)),
            finalize=finalize or (lambda p: p),
        )

    def _classes(self, p: np.ndarray) -> np.ndarray:
        """Class map of compact probabilities, through ``postprocess``."""
        out = classes(p)
        return out if self.postprocess is None else self.postprocess(out)

    def predict_proba(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Class probabilities, class axis first: ``(K, H, W)`` per image.

        Returns an ndarray ``(N, K, H, W)`` when all images have one size, else a list.
        """
        self._check_fitted()
        images = self._check_images(X)
        return _stack_or_list([expand(p) for p in self._predict_images(images)])

    def predict(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Class masks ``(H, W)`` (uint8, after ``postprocess``), as an ndarray when all
        sizes agree, else a list."""
        self._check_fitted()
        images = self._check_images(X)
        return _stack_or_list(self._predict_images(images, finalize=self._classes))

    def predict_instances(
        self, X: Any, threshold: float = 0.5, split: float | None = 0.5
    ) -> np.ndarray | list[np.ndarray]:
        """Instance labels (0 background, 1..n objects) of each image.

        Connected components of ``foreground > threshold`` for ``target="mask"``; for
        ``target="boundary"`` a watershed seeded from confident interiors, whose touching
        seeds are split at distance-transform maxima of height ``split`` (None: never;
        see :func:`~skunet.instances.watershed_instances`).
        """
        self._check_fitted()
        self._check_instances()
        images = self._check_images(X)
        return _stack_or_list(
            [self._instances(p, threshold, split) for p in self._predict_images(images)]
        )

    def _check_instances(self) -> None:
        if self.target == "mask" and self.n_classes != 2:
            raise ValueError(
                f"predict_instances needs a binary (n_classes=2) or target='boundary' "
                f"model; this one has n_classes={self.n_classes}"
            )

    def _instances(
        self, p: np.ndarray, threshold: float = 0.5, split: float | None = 0.5
    ) -> np.ndarray:
        """Instance labels from one image's compact probabilities (see predict_instances)."""
        if self.target == "boundary":
            return watershed_instances(1 - p[0], p[2], threshold, split)
        return label_components(expand(p)[1], threshold)

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
        (fitted or not). Returns an :class:`~skunet.lr_finder.LRRangeResult` with ``lrs``,
        ``losses`` (smoothed), ``suggestion`` (steepest descent) and ``.plot()``.
        ``smoothing`` (0.05) and ``diverge`` (4.0) tune the smoothing and the stop.
        """
        return lr_range_test(self, X, y, start_lr, end_lr, num_iter, **kwargs)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean IoU over the foreground classes, pooled over all pixels (higher is better)."""
        self._check_fitted()
        images = self._check_images(X)
        masks = check_masks(y, images, n_classes=self.n_classes, target=self.target)
        truth = [mask_classes(m, self.n_classes, self.target) for m in masks]
        pred = self._predict_images(images, finalize=self._classes)
        return float(iou_score(truth, pred, n_classes=self.n_classes))

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the fitted segmenter to one file: parameters as JSON, weights as safetensors.

        Loading it (:meth:`load`) never unpickles anything. Callbacks and callables among
        the parameters are not stored (the file lists them under ``dropped_params``).
        Raises ``FileExistsError`` rather than replacing a file unless ``overwrite``.
        """
        self._check_fitted()
        return save_segmenter(self, path, overwrite=overwrite)

    def export_onnx(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the fitted network as an ONNX graph taking images of any height and width.

        Input ``image``: float32 ``(N, C, H, W)``, scaled as this estimator scales images;
        output ``probabilities``: ``(N, K, H, W)``, as ``predict_proba`` gives for an image
        that fits in one tile (see :mod:`skunet.export`). Needs the ``export`` extra
        (onnx, onnxscript; onnxruntime to run it). Refuses to replace a file unless
        ``overwrite``.
        """
        from .export import export_onnx

        return export_onnx(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str = "cpu", trust: tuple[str, ...] = ()
    ) -> UNetSegmenter:
        """Read a file written by :meth:`save` onto ``device``.

        Classes in the file are imported only from skunet, torch and skorch, and from the
        packages named in ``trust`` (e.g. ``trust=("segmentation_models_pytorch",)``).
        """
        return load_segmenter(cls, path, device=device, trust=trust)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.non_deterministic = self.random_state is None
        return tags
