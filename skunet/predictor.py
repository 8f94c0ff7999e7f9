"""``Predictor``: a fitted network and everything it needs to turn images into masks.

A :class:`~skunet.UNetSegmenter` hands out its predictor after ``fit``
(``seg.predictor_``): the network, its window geometry, the inference settings, the
preprocessing and the class / instance conventions of the model, in one object with a
checked public layer (``check_images``, ``predict_proba``, ``predict``,
``predict_instances``) over an unchecked core (``probabilities``, ``classes``,
``instances``) that takes images ``check_images`` returned. Callbacks, scorers, the
evaluation, the command line and the ONNX export all predict through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError
from torch import nn

from .intake.validation import check_images
from .lazy import is_lazy
from .prediction.block_instances import blockwise_instances
from .prediction.blocks import BlockJob, chunk_grid
from .prediction.inference import (
    InferenceSettings,
    classes,
    expand,
    predict_compact,
    tile_input_size,
)
from .prediction.rescale import check_scale, rescale_image, resize_probabilities
from .preprocessing import normalize_images
from .targets import TARGETS, decoding
from .tiling import Geometry

__all__ = ["Predictor", "PredictorMixin", "stack_or_list"]


def stack_or_list(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One ndarray when all arrays share a shape, else the list itself."""
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    return arrays


@dataclass
class Predictor:
    """Prediction with a fitted network.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network (put in eval mode by every prediction).
    geometry : Geometry
        Window sizes the network accepts and its context (:mod:`skunet.tiling`).
    settings : InferenceSettings
        Device, tiling, blending, flips, precision, batch size in pixels.
    n_channels : int
        Channels the network was trained on.
    n_classes : int, default=2
    target : {"mask", "boundary", "distance"}, default="mask"
        ``"boundary"``: classes 0 background / 1 interior / 2 boundary, ``"distance"``:
        background and levels of the distance to the object's border, both give
        instances by a seeded watershed; binary ``"mask"`` models give connected
        components.
    normalize : {None, "percentile"}, default=None
        Per-image preprocessing applied by :meth:`check_images`.
    postprocess : callable or None, default=None
        ``f(classes) -> classes`` applied by :meth:`classes`.
    membranes : bool, default=False
        A binary model whose background is membrane between touching cells (EM): its
        instances come from :func:`~skunet.instances.membrane_instances`.
    default_tile : int, default=288
        The largest tile side when ``settings.tile_size`` is None (each image takes the
        tile that covers it with the fewest pixels,
        :func:`~skunet.prediction.inference.tile_input_size`).
    instance_threshold : float, default=0.5
    instance_split : float, "auto" or None, default="auto"
        What :meth:`instances` uses when not told (a calibrated model's choice, see
        :mod:`skunet.calibration`).

    Examples
    --------
    >>> from skunet.models import UNet
    >>> net = UNet(in_channels=1, out_channels=1, depth=2, base_channels=4)
    >>> p = Predictor(net, Geometry(net, padding=4), InferenceSettings(), n_channels=1)
    >>> p.predict(np.zeros((2, 30, 20), np.float32)).shape
    (2, 30, 20)
    >>> p.predict_proba([np.zeros((30, 20), np.float32)])[0].shape
    (2, 30, 20)
    """

    module: nn.Module
    geometry: Geometry
    settings: InferenceSettings
    n_channels: int
    n_classes: int = 2
    target: str = "mask"
    normalize: str | None = None
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None
    default_tile: int = 288
    membranes: bool = False
    instance_threshold: float = 0.5
    instance_split: float | str | None = "auto"

    # ---------------------------------------------------------- checked layer
    def check_images(self, X: Any, scale: float = 1.0) -> list[np.ndarray]:
        """Validated ``(C, H, W)`` images, preprocessed as the model was trained
        (``scale`` is checked first, for the methods that take it).

        Images keep their dtype unless normalised, so that very large ones are converted
        to float tile by tile.
        """
        check_scale(scale)
        images = check_images(X, n_channels=self.n_channels, as_float=False)
        return normalize_images(images, self.normalize)

    def predict_proba(self, X: Any, out: Any = None, scale: float = 1.0) -> Any:
        """Class probabilities ``(K, H, W)`` per image (K >= 2); of a lazy image (Dask
        or Zarr) a Dask array, or written into the Zarr array ``out``
        (see :mod:`skunet.prediction.blocks`). ``scale``: the factor each image is resized
        by before the network sees it, the probabilities resized back
        (:mod:`skunet.prediction.rescale`; in-memory images)."""
        if out is not None or is_lazy(X):
            return self._blockwise(X, out, "proba", expand, self.n_classes, np.float32, scale)
        images = self.check_images(X, scale)
        return stack_or_list([expand(p) for p in self.probabilities(images, scale=scale)])

    def predict(self, X: Any, out: Any = None, scale: float = 1.0) -> Any:
        """uint8 class masks ``(H, W)``, after ``postprocess``; of a lazy image a Dask
        array, or written into the Zarr array ``out``; ``scale`` as :meth:`predict_proba`."""
        if out is not None or is_lazy(X):
            return self._blockwise(X, out, "classes", classes, None, np.uint8, scale)
        images = self.check_images(X, scale)
        return stack_or_list(self.probabilities(images, self.classes, scale))

    def predict_uncertainty(self, X: Any, out: Any = None, scale: float = 1.0) -> Any:
        """Per-pixel uncertainty ``(H, W)`` in [0, 1] of each image: how close the
        probabilities are to the decision the model's classes or instances come from
        (the target's :attr:`~skunet.targets.Target.uncertainty`; flip-averaged with
        ``tta``); of a lazy image a Dask array, or written into the Zarr array ``out``;
        ``scale`` as :meth:`predict_proba`."""
        uncertainty = decoding(self.target, self.membranes).uncertainty
        if out is not None or is_lazy(X):
            return self._blockwise(X, out, "uncertainty", uncertainty, None, np.float32, scale)
        images = self.check_images(X, scale)
        return stack_or_list(self.probabilities(images, uncertainty, scale))

    def _blockwise(self, X, out, kind, finalize, channels, dtype, scale):
        _in_memory_scale(scale)
        if out is None:
            return BlockJob(self, X).array(finalize, channels, dtype)
        job = BlockJob(self, X, chunks=chunk_grid(out))
        job.store(out, kind, finalize, channels)
        return out

    def tile_sizes(self, shape: tuple[int, int] | None = None) -> tuple[int, int]:
        """``(input, covered)`` sides of a prediction tile of an image of ``shape``
        (H, W; None: the largest tile): what the network takes, and the region of it
        whose probabilities are kept (the input minus the context)."""
        tile = tile_input_size(self.geometry, self.settings, self.default_tile, shape)
        return tile, tile - 2 * self.geometry.context

    def predict_instances(
        self,
        X: Any,
        threshold: float | None = None,
        split: float | str | None = "auto",
        out: Any = None,
        scale: float = 1.0,
    ) -> Any:
        """Instance labels per image (see :meth:`instances`); of a lazy image an int64
        Dask array, or written into the Zarr array ``out``
        (see :mod:`skunet.prediction.block_instances`); ``scale`` as
        :meth:`predict_proba`: the instances are decoded at the image's own size."""
        self.check_instances()
        if out is not None or is_lazy(X):
            _in_memory_scale(scale)
            return blockwise_instances(self, X, threshold, split, out)
        images = self.check_images(X, scale)
        return stack_or_list(
            [self.instances(p, threshold, split) for p in self.probabilities(images, scale=scale)]
        )

    @property
    def gives_instances(self) -> bool:
        """Whether the model can give instances (binary, or an instance target)."""
        return TARGETS[self.target].instance_labels or self.n_classes == 2

    def check_instances(self) -> None:
        """Raise ValueError unless the model can give instances."""
        if not self.gives_instances:
            instance_targets = " / ".join(t for t in TARGETS if TARGETS[t].instance_labels)
            raise ValueError(
                f"predict_instances needs a binary (n_classes=2) model or one of target "
                f"{instance_targets}; this one has n_classes={self.n_classes}"
            )

    # ---------------------------------------------------------- unchecked core
    def probabilities(
        self,
        images: Sequence[np.ndarray],
        finalize: Callable | None = None,
        scale: float = 1.0,
    ) -> list[np.ndarray]:
        """``finalize(p)`` of the compact probabilities ``p`` of each checked image
        (one foreground channel for binary models, K channels otherwise; see
        :mod:`skunet.prediction.inference`); with ``scale``, of the image resized by it
        and ``p`` resized back (:mod:`skunet.prediction.rescale`)."""
        finalize = finalize or (lambda p: p)
        if scale == 1:  # checked by check_images
            return self._compact(images, finalize)
        compact = self._compact([rescale_image(im, scale) for im in images], lambda p: p)
        return [finalize(resize_probabilities(p, im.shape[1:])) for p, im in zip(compact, images)]

    def _compact(self, images: Sequence[np.ndarray], finalize: Callable) -> list[np.ndarray]:
        return predict_compact(
            self.module, images, self.geometry, self.settings, self.default_tile, finalize
        )

    def classes(self, p: np.ndarray) -> np.ndarray:
        """uint8 class map of compact probabilities, through ``postprocess``."""
        out = classes(p)
        return out if self.postprocess is None else self.postprocess(out)

    def instances(
        self, p: np.ndarray, threshold: float | None = None, split: float | str | None = "auto"
    ) -> np.ndarray:
        """Instance labels of one image's compact probabilities.

        For ``target="boundary"`` a watershed seeded from confident interiors, whose
        touching seeds are split at distance-transform maxima of height ``split`` (see
        :func:`~skunet.instances.watershed_instances`); for ``target="distance"`` a
        watershed from the regions where the expected distance level exceeds ``split``
        (:func:`~skunet.instances.distance_instances`); for a membrane model (``membranes``)
        the basins of the membrane probability seeded by the components of ``cell > threshold``,
        merged across borders whose strength (mean membrane probability against the cells' insides)
        is below ``split`` (:func:`~skunet.instances.membrane_instances`); otherwise connected
        components of ``foreground > threshold``. ``threshold=None`` and ``split="auto"`` are the
        model's own (``instance_threshold`` / ``instance_split``; uncalibrated: 0.5, and 0.5 px for
        boundary models, level 0.5 for distance models, border strength 0.85 for membrane models);
        ``split=None`` never splits (membrane models: connected components).
        """
        settings = self.instance_settings(threshold, split)
        decode = decoding(self.target, self.membranes).decode
        return decode(p, settings["threshold"], settings["split"])

    def instance_settings(
        self, threshold: float | None = None, split: float | str | None = "auto"
    ) -> dict[str, Any]:
        """``{"decoder", "threshold", "split"}``: the :mod:`skunet.instances` function
        :meth:`instances` runs (the :func:`~skunet.targets.decoding` record's) and the
        settings it gives it (the model's own for ``threshold=None`` and
        ``split="auto"``)."""
        record = decoding(self.target, self.membranes)
        threshold = self.instance_threshold if threshold is None else threshold
        split = self.instance_split if split == "auto" else split
        split = record.split if split == "auto" else split
        return {"decoder": record.decoder, "threshold": threshold, "split": split}


def _in_memory_scale(scale: float) -> None:
    if check_scale(scale) != 1:
        raise ValueError(
            f"scale={scale!r} rescales in-memory images only; block-wise prediction of a "
            "Dask or Zarr image (or into out=) needs scale=1: rescale the array first"
        )


PREDICTION_BATCHES = 4
"""The largest default prediction tile holds this many training batches' pixels."""

# the parameters a Predictor is built from (with the network, its device and layout)
_PREDICTOR_PARAMS = (
    "tile_size", "tile_overlap", "blend", "tta", "autocast", "batch_size", "verbose",
    "patch_size", "padding", "n_classes", "target", "normalize", "postprocess", "task",
    "criterion",
)  # fmt: skip


class PredictorMixin:
    """The estimator's side of prediction: its :class:`Predictor`, built from the fitted
    network and the current settings, and kept until one of them changes."""

    @property
    def predictor_(self) -> Predictor:
        """The fitted network as a :class:`~skunet.predictor.Predictor`, with the current
        prediction settings (``tile_size``, ``tta``, ``postprocess`` ...); built once and
        kept until the network or a setting it depends on changes.

        Raises ``NotFittedError`` before ``fit``.
        """
        if not hasattr(self, "classes_") or not getattr(self, "initialized_", False):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) first"
            )
        key = (
            self.module_,
            self._device(),
            self._channels_last(),
            self.n_channels_in_,
            getattr(self, "instance_params_", None),
            *(getattr(self, name) for name in _PREDICTOR_PARAMS),
        )
        cached = self.__dict__.get("_predictor_cache_")
        if cached is not None and cached[0] == key:
            return cached[1]
        geometry = self.geometry_
        window = self.patch_size + 2 * geometry.context
        settings = InferenceSettings(
            device=key[1],
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            blend=self.blend,
            tta=self.tta,
            channels_last=key[2],
            autocast=self.autocast,
            pixels_per_batch=self.batch_size * window**2,
            progress=bool(self.verbose),
        )
        predictor = Predictor(
            module=self.module_,
            geometry=geometry,
            settings=settings,
            n_channels=self.n_channels_in_,
            n_classes=self.n_classes,
            target=self.target,
            normalize=self.normalize,
            postprocess=self.postprocess,
            # the largest tile holds four training batches' pixels: with no activations
            # kept for a backward pass it needs less memory than a training batch (the
            # nuclei model in bfloat16, peak RSS measured once by hand on 2026-12-06, not
            # by a benchmark: a 1632-px tile about 520 MB above the model, a training
            # batch 580 MB)
            default_tile=max(window, math.isqrt(PREDICTION_BATCHES * settings.pixels_per_batch)),
            membranes=self._membranes(),
            **{f"instance_{k}": v for k, v in getattr(self, "instance_params_", {}).items()},
        )
        self._predictor_cache_ = (key, predictor)
        return predictor

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_predictor_cache_", None)  # rebuilt on demand; it holds the network
        return state
