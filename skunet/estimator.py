"""``UNetSegmenter``: a skorch ``NeuralNet`` that segments lists of images.

The data flow: ``fit`` checks the parameters (:attr:`UNetSegmenter._parameter_constraints`),
validates images and masks (:mod:`skunet.intake.validation`), turns masks into class maps
(:mod:`skunet.targets`), splits whole images into train / validation, and trains on
random mirrored patches (:mod:`skunet.intake.sampling`) with padding-aware losses
(:mod:`skunet.losses`); skorch's hooks for that live in :mod:`skunet.fitting.training` and
mixed precision in :mod:`skunet.mixed_precision`. After ``fit``, ``predictor_``
(:mod:`skunet.predictor`) predicts: it mirrors each image to the size the network needs,
runs it in tiles, and crops back (:mod:`skunet.prediction.inference`, :mod:`skunet.tiling`);
``score`` is :func:`skunet.evaluation.evaluate`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from skorch.dataset import ValidSplit

from .calibration import InstanceCalibration, calibrate_segmenter
from .callbacks import (
    CyclicLRScheduler,
    EncoderFreezer,
    InstanceCalibrator,
    IoUScoring,
    ProgressBar,
    SegmentationCheckpoint,
)
from .constraints import Interval, Options
from .evaluation import evaluate
from .export.graph import export_onnx
from .fitting.training import TrainingMixin
from .intake.validation import check_masks
from .mixed_precision import MixedPrecisionMixin
from .models import UNet
from .persistence import load_segmenter, save_segmenter
from .prediction.inference import InferenceSettings
from .predictor import PredictorMixin
from .progress import in_notebook
from .targets import TARGETS
from .tasks import TASKS

__all__ = ["UNetSegmenter"]


class UNetSegmenter(PredictorMixin, TrainingMixin, MixedPrecisionMixin, NeuralNet):
    """Semantic segmentation of images of any size with a U-Net, as an sklearn estimator.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=skunet.models.UNet
        ``in_channels`` / ``out_channels`` are filled in from ``X`` and ``n_classes``
        unless given as ``module__in_channels`` / ``module__out_channels``.
    n_classes : int, default=2
        Two classes train one logit with binary cross-entropy; more train ``n_classes``
        logits with cross-entropy. Both losses skip padding.
    target : {"mask", "boundary", "distance"}, default="mask"
        ``"mask"``: ``y`` holds class indices (with 2 classes any value > 0 is
        foreground). ``"boundary"`` / ``"distance"``: ``y`` holds instance labels,
        trained as 0 background / 1 interior / 2 boundary (``n_classes=3``), or as
        background and ``n_classes - 1`` levels of each object's normalised distance
        to its border (:mod:`skunet.targets`).
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
        ``tile_size - 2 * padding`` are predicted in overlapping tiles. None: tiles of
        at most the side of a square holding four training batches' pixels (``4 *
        batch_size`` windows of ``patch_size + 2 * padding``; with no activations kept
        for a backward pass such a tile needs less memory than a training batch), each
        image cut into the tiles that cover it with the fewest pixels in all.
    tile_overlap : float, default=0.1
        Fraction of a tile shared with its neighbour (Cellpose's default; at 0.25,
        MONAI's, the pretrained nuclei model's AP on 2048-pixel mosaics was the same
        and prediction 1.5 times slower: ``benchmarks/prediction_speed.py``).
    blend : {"gaussian", "constant"}, default="gaussian"
        Weighting of overlapping tiles.
    normalize : {None, "percentile"}, default=None
        None: integer images are scaled to [0, 1] by their dtype's range and float
        images used as they are. ``"percentile"``: each image and channel has its 1st and
        99.8th percentiles mapped to 0 and 1 (:func:`~skunet.preprocessing.percentile_normalize`),
        in ``fit`` and in every prediction, so a saved model carries its preprocessing.
    tta : bool or "dihedral", default=False
        Average the probabilities over horizontal and vertical flips (True: 4 views),
        or over the square's 8 symmetries, the flips of the image and of its transpose
        (``"dihedral"``: twice the prediction time of True; the better choice where
        orientation means nothing, as in histology: see the pretrained models' page).
    postprocess : callable or None, default=None
        ``f(classes (H, W) uint8) -> classes`` applied to every predicted class map
        (``predict``, ``score``, scorers, plots; not ``predict_proba``), e.g.
        :func:`skunet.instances.largest_object` for images of one object. A module-level
        function is stored in model files by name, a dataclass such as
        :class:`skunet.instances.LargestObject` with its fields.
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
    task : str or None, default=None
        The task the model is for (a name of :data:`skunet.tasks.TASKS`: what
        ``skunet evaluate`` reports, how the command line reads images); the presets set
        it, and model files store it.
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
    ``freezer`` (:class:`~skunet.callbacks.EncoderFreezer`: the VGG16 encoder of
    :class:`~skunet.models.VGG16UNet`), ``lr_scheduler`` (cyclic LR per batch), ``iou``
    (``valid_iou``), ``checkpoint`` (best ``valid_iou``, restored after ``fit``),
    ``calibration`` (:class:`~skunet.callbacks.InstanceCalibrator`: instance targets'
    thresholds on the validation images); in a notebook ``progress_bar`` unless ``verbose=0``.
    Off unless given: ``weight_average`` (:class:`~skunet.callbacks.WeightAverage`, a moving
    average of the weights that validation, checkpoint and the fitted model use).

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
        tile_overlap: float = 0.1,
        blend: str = "gaussian",
        normalize: str | None = None,
        tta: bool | str = False,
        postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        channels_last: bool | None = None,
        autocast: bool | str = False,
        task: str | None = None,
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
        self.task = task

    # What each of skunet's own parameters, and skorch's numeric ones, may be (checked by
    # ``fit`` before any data is converted; see :func:`skunet.constraints.check_params`).
    # skorch checks the names of all arguments, and its other parameters itself.
    _parameter_constraints: dict[str, list[Any]] = {
        "lr": [Interval(float, 0)],  # 0 keeps the weights (tests of the prediction path)
        "max_epochs": [Interval(int, 0)],
        "batch_size": [Interval(int, 1)],
        "n_classes": [Interval(int, 2)],
        "target": [Options(TARGETS)],  # live: a registered target is accepted
        "patch_size": [Interval(int, 1)],
        "padding": [Interval(int, 0)],
        "patches_per_image": [Interval(int, 1)],
        "augment": ["boolean", callable],
        "random_state": [Interval(int), None],
        "normalize": [Options(("percentile",)), None],
        "postprocess": [callable, None],
        "task": [Options(tuple(TASKS)), None],
        **InferenceSettings._parameter_constraints,  # tile_size, tta, autocast, ...
    }

    # ------------------------------------------------------------------ set-up
    @property
    def _default_callbacks(self):
        skorch_defaults = super()._default_callbacks
        ours = [
            ("freezer", EncoderFreezer("conv*")),
            ("lr_scheduler", CyclicLRScheduler()),
            ("iou", IoUScoring()),
            # off by default; before the checkpoint, which then keeps the average
            ("weight_average", None),
            ("checkpoint", SegmentationCheckpoint()),
            ("calibration", InstanceCalibrator()),  # after the checkpoint restores the best
        ]
        if self.verbose and in_notebook():  # a bar per epoch, as notebook users expect
            ours.append(("progress_bar", ProgressBar()))
        # after skorch's scoring callbacks, before its print_log
        return (
            [cb for cb in skorch_defaults if cb[0] != "print_log"]
            + ours
            + [cb for cb in skorch_defaults if cb[0] == "print_log"]
        )

    # ---------------------------------------------------------------- predict
    def predict_proba(self, X: Any, out: Any = None, scale: float = 1.0) -> Any:
        """Class probabilities, class axis first: ``(K, H, W)`` per image.

        Returns an ndarray ``(N, K, H, W)`` when all images have one size, else a list.
        An image larger than memory (a Dask or Zarr ``(H, W[, C])`` array) gives a Dask
        array predicted block by block, equal to the in-memory result, or fills the Zarr
        array ``out`` (resuming an interrupted run; :mod:`skunet.prediction.blocks`).
        ``scale``: in-memory images at another magnification than the training images
        are resized by this factor before the network sees them (2: a 20x image for a
        40x model), and the results come back at their own size
        (:mod:`skunet.prediction.rescale`).
        """
        return self.predictor_.predict_proba(X, out, scale)

    def predict(self, X: Any, out: Any = None, scale: float = 1.0) -> Any:
        """Class masks ``(H, W)`` (uint8, after ``postprocess``), as an ndarray when all
        sizes agree, else a list; Dask / Zarr images, ``out`` and ``scale`` as in
        :meth:`predict_proba`."""
        return self.predictor_.predict(X, out, scale)

    def predict_instances(
        self,
        X: Any,
        threshold: float | None = None,
        split: float | str | None = "auto",
        out: Any = None,
        scale: float = 1.0,
    ) -> Any:
        """Instance labels (0 background, 1..n objects) of each image (``scale`` as
        in :meth:`predict_proba`).

        Connected components of ``foreground > threshold`` for ``target="mask"``, seeded
        watersheds for instance targets and EM membrane models; ``split`` separates
        touching objects (:meth:`Predictor.instances <skunet.predictor.Predictor.instances>`
        says how for each). ``threshold=None`` and ``split="auto"``: the model's
        calibrated pair (``instance_params_``, see :meth:`calibrate_instances`), else
        the defaults; ``split=None`` never splits. A Dask or Zarr image gives int64
        labels block by block, equal to the in-memory ones up to numbering (objects
        cut by blocks are merged; :mod:`skunet.prediction.block_instances`), or fills ``out``,
        resuming an interrupted run from the first passes it kept beside ``out``
        (:mod:`skunet.prediction.instance_stash`).
        """
        return self.predictor_.predict_instances(X, threshold, split, out, scale)

    def predict_uncertainty(self, X: Any, out: Any = None, scale: float = 1.0) -> Any:
        """Per-pixel uncertainty ``(H, W)`` in [0, 1] of each image, from the
        probabilities ``predict_proba`` computes (no extra network pass): one minus the
        margin of the decision the classes or instances come from (for
        ``target="distance"`` the foreground decision alone; flip-averaged with
        ``tta``). High where a correction is most likely needed; rank images with
        :func:`skunet.evaluation.uncertainty_ranking`. Lazy ``X``, ``out=`` and ``scale``
        as :meth:`predict_proba`."""
        return self.predictor_.predict_uncertainty(X, out, scale)

    def calibrate_instances(
        self,
        X: Any,
        y: Any,
        thresholds: Sequence[float] | None = None,
        splits: Sequence[float | None] | None = None,
    ) -> InstanceCalibration:
        """Choose ``predict_instances``' threshold (and split, for instance targets
        and membrane models) on images the network did not train on: by mean AP over
        IoU 0.5-0.9 against the instance labels ``y``, or for a membrane model (EM) by
        the challenge's mean V_rand against cell masks ``y`` (1 = cell, 0 = membrane),
        taking the highest seed threshold within 0.01 of the best
        (:mod:`skunet.calibration`; the defaults win ties). The pair becomes
        ``instance_params_`` (used by ``predict_instances`` and the AP scorers, kept by
        :meth:`save`); the result holds every candidate's score."""
        images = self.predictor_.check_images(X)
        # membrane models judge cell masks (their cells: 4-connected components)
        labels = check_masks(y, images, n_classes=2, instances=not self._membranes())
        return calibrate_segmenter(self, images, labels, thresholds, splits)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean IoU over the foreground classes, pooled over all pixels (higher is better)."""
        return evaluate(self, X, y, ["iou"])["iou"]

    def save(
        self, path: str | os.PathLike, overwrite: bool = False, weights: str = "float32"
    ) -> Path:
        """Write the fitted segmenter to one file: parameters as JSON, weights as safetensors.

        Loading it (:meth:`load`) never unpickles anything. Callbacks and callables among
        the parameters are not stored (the file lists them under ``dropped_params``).
        Raises ``FileExistsError`` rather than replacing a file unless ``overwrite``.
        ``weights="float16"`` stores the weights at half the size (they load back as
        float32; predictions change by about 1e-3 of a probability).
        """
        self.predictor_  # noqa: B018  (raises NotFittedError before fit)
        return save_segmenter(self, path, overwrite=overwrite, weights=weights)

    def export_onnx(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the fitted network as an ONNX graph taking images of any height and width.

        Input ``image``: float32 ``(N, C, H, W)``, scaled as this estimator scales images;
        output ``probabilities``: ``(N, K, H, W)``, as ``predict_proba`` gives for an image
        that fits in one tile (see :mod:`skunet.export`). Needs the ``export`` extra
        (onnx, onnxscript; onnxruntime to run it). Refuses to replace a file unless
        ``overwrite``.
        """
        return export_onnx(self.predictor_, path, overwrite=overwrite)

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
