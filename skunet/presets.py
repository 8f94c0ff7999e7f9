"""Each task's training recipe as a ready :class:`~skunet.UNetSegmenter`.

A preset is a plain ``UNetSegmenter`` with the task's parameters filled in: every value
can be overridden by keyword (``nuclei_segmenter(max_epochs=5, device="cuda")``), and the
result clones, grid-searches and saves like any other segmenter. :data:`RECIPES` holds
the parameters themselves, for reading or for building variants.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from skorch.callbacks import EarlyStopping

from .augment import Augment
from .estimator import UNetSegmenter
from .losses import PaddedBCEWithLogitsLoss, WeightMapLoss
from .models import UNet, VGG16UNet
from .validation import lookup

__all__ = ["RECIPES", "blood_cell_segmenter", "em_segmenter", "nuclei_segmenter"]

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "nuclei": {
        # The recipe with the best held-out object accuracy (benchmarks/nuclei.py): a
        # batch-normalised U-Net trained on 3 classes (background / interior / boundary),
        # split into nuclei by a seeded watershed, on percentile-normalised images.
        "unet": {
            "module": UNet,
            "module__depth": 4,
            "module__base_channels": 32,
            "module__batch_norm": True,
            "n_classes": 3,
            "target": "boundary",
            "normalize": "percentile",
            "patch_size": 256,
            "padding": 16,
            "patches_per_image": 2,
            "batch_size": 8,
            "optimizer": torch.optim.Adam,
            "lr": 1e-3,
            "max_epochs": 60,
        },
        # skorch's nuclei tutorial: VGG16-BN encoder (ImageNet weights, frozen by the
        # ``freezer`` callback), 256 px patches + 16 px mirrored border, padding-aware
        # BCE, SGD with momentum 0.9, CyclicLR 0.002 -> 0.2 per batch, batch 32, 20
        # epochs; the bundled IoU scoring and best-IoU checkpoint as in the tutorial.
        "skorch_tutorial": {
            "module": VGG16UNet,
            "module__weights": "IMAGENET1K_V1",
            "n_classes": 2,
            "target": "mask",
            "patch_size": 256,
            "padding": 16,
            "criterion": PaddedBCEWithLogitsLoss,
            "optimizer": torch.optim.SGD,
            "optimizer__momentum": 0.9,
            "lr": 0.2,
            "callbacks__lr_scheduler__base_lr": 0.002,
            "batch_size": 32,
            "max_epochs": 20,
        },
    },
    "blood_cells": {
        # The best CPU recipe so far (benchmarks/wbc.py, 5-fold CV: nucleus Dice 0.967,
        # whole cell 0.978 in 8 minutes per fold on 2 cores, short of 0.97 / 0.99):
        # every 88-120 px image in one window, batch-normalised U-Net, Adam with a cyclic
        # rate whose amplitude halves every cycle (triangular2). Options not yet in the
        # recipe because no cross-validation has measured them: autocast="auto",
        # tta=True, postprocess=largest_object, criterion=SoftDiceLoss.
        "fast": {
            "module": UNet,
            "module__depth": 4,
            "module__base_channels": 16,
            "module__batch_norm": True,
            "n_classes": 3,
            "patch_size": 96,
            "padding": 16,
            "batch_size": 8,
            "optimizer": torch.optim.Adam,
            "lr": 3e-3,
            "callbacks__lr_scheduler__mode": "triangular2",
            "max_epochs": 80,
        },
        # The lab's Keras recipe: ELU U-Net with dropout 0.1-0.3 per level, 16 base
        # channels (1,941,105 parameters), cross-entropy, Adam at a constant 1e-4, batch 8.
        "lab": {
            "module": UNet,
            "module__depth": 4,
            "module__base_channels": 16,
            "module__activation": "elu",
            "module__dropout": [0.1, 0.1, 0.2, 0.2, 0.3],
            "n_classes": 3,
            "patch_size": 96,
            "padding": 16,
            "batch_size": 8,
            "optimizer": torch.optim.Adam,
            "lr": 1e-4,
            "callbacks__lr_scheduler": None,
            "max_epochs": 40,
        },
    },
    "em": {
        # The 2015 U-Net paper on ISBI 2012: the "valid" network (572 px tiles -> 388 px
        # output, mirrored at image borders), one tile per batch, SGD with momentum
        # 0.99 at a constant rate, binary cross-entropy weighted by the paper's weight
        # map (w0=10, sigma=5) of every augmented tile, elastic deformation (3 x 3 grid,
        # 10 px) plus flips, small affine and gray-value jitter; early stopping on the
        # (weighted) validation loss. Labels: 1 = cell interior, 0 = membrane.
        "paper": {
            "module": UNet,
            "module__padding": "valid",
            "module__depth": 4,
            "module__base_channels": 64,
            "n_classes": 2,
            "patch_size": 388,
            "patches_per_image": 4,
            "batch_size": 1,
            "criterion": WeightMapLoss,
            "criterion__w0": 10.0,
            "criterion__sigma": 5.0,
            "augment": Augment.unet_paper(),
            "optimizer": torch.optim.SGD,
            "optimizer__momentum": 0.99,
            "lr": 0.01,
            "callbacks__lr_scheduler": None,
            "callbacks": [
                ("early_stopping", EarlyStopping(monitor="valid_loss", patience=20, sink=print))
            ],
            "max_epochs": 200,
        },
    },
}
# The same tiles, weight map and augmentation at CPU scale: 16 base channels with batch
# normalisation, Adam with the bundled cyclic rate (benchmarks/em.py, configuration "cpu").
RECIPES["em"]["fast"] = {
    **{
        k: v
        for k, v in RECIPES["em"]["paper"].items()
        if k not in ("optimizer__momentum", "callbacks__lr_scheduler")
    },
    "module__base_channels": 16,
    "module__batch_norm": True,
    "optimizer": torch.optim.Adam,
    "lr": 1e-3,
    "patches_per_image": 2,
    "max_epochs": 40,
}


def _preset(task: str, recipe: str, overrides: dict[str, Any]) -> UNetSegmenter:
    # a copy: callbacks and augmentations in a recipe are never shared between segmenters
    params = copy.deepcopy(dict(lookup(RECIPES[task], recipe, f"{task} recipe")))
    params.update(overrides)
    return UNetSegmenter(**params)


def nuclei_segmenter(recipe: str = "unet", **overrides: Any) -> UNetSegmenter:
    """A segmenter for fluorescence nuclei (Kaggle DSB2018), ready to ``fit``.

    Parameters
    ----------
    recipe : {"unet", "skorch_tutorial"}, default="unet"
        ``"unet"``: the recipe with the best held-out AP in ``benchmarks/nuclei.py``
        (3-class U-Net, ``target="boundary"``, watershed instances, percentile
        normalisation, Adam, 60 epochs: a GPU recipe; on a CPU, lower ``max_epochs`` and
        ``module__base_channels``). ``"skorch_tutorial"``: skorch's nuclei tutorial
        (frozen ImageNet VGG16-BN encoder, BCE, SGD + CyclicLR 0.002 -> 0.2, batch 32,
        20 epochs); its weights are downloaded by torchvision on first use.
    **overrides
        Any :class:`~skunet.UNetSegmenter` parameter. ``target="mask"`` alone also sets
        ``n_classes=2`` (binary training, connected-component instances).

    Examples
    --------
    >>> seg = nuclei_segmenter(max_epochs=5)
    >>> seg.target, seg.n_classes, seg.max_epochs
    ('boundary', 3, 5)
    >>> nuclei_segmenter(target="mask").n_classes
    2
    """
    if overrides.get("target") == "mask" and "n_classes" not in overrides:
        overrides["n_classes"] = 2
    return _preset("nuclei", recipe, overrides)


def blood_cell_segmenter(recipe: str = "fast", **overrides: Any) -> UNetSegmenter:
    """A segmenter for white blood cells: 0 background, 1 cytoplasm, 2 nucleus.

    Parameters
    ----------
    recipe : {"fast", "lab"}, default="fast"
        ``"fast"``: the best CPU recipe found so far for the benchmark's targets (nucleus
        Dice >= 0.97, whole-cell Dice >= 0.99 in <= 10 minutes on 2 cores; see
        ``benchmarks/wbc.py`` and the README for how close it comes). ``"lab"``: the lab's
        Keras recipe (ELU + dropout U-Net, 16 base channels, Adam at a constant 1e-4,
        cross-entropy, batch 8).
    **overrides
        Any :class:`~skunet.UNetSegmenter` parameter.

    Examples
    --------
    >>> seg = blood_cell_segmenter("lab")
    >>> seg.n_classes, seg.lr, seg.get_params()["module__activation"]
    (3, 0.0001, 'elu')
    """
    return _preset("blood_cells", recipe, overrides)


def em_segmenter(recipe: str = "paper", **overrides: Any) -> UNetSegmenter:
    """A segmenter for EM membranes (ISBI 2012): the 2015 U-Net recipe.

    Labels are 1 = cell interior, 0 = membrane (:func:`~skunet.datasets.load_isbi2012`).

    Parameters
    ----------
    recipe : {"paper", "fast"}, default="paper"
        ``"paper"``: the paper's "valid" U-Net (64 base channels, 572 -> 388 px tiles, batch 1), SGD
        with momentum 0.99 at 0.01, the weight map (w0=10, sigma=5) computed on every
        augmented tile (:class:`~skunet.losses.WeightMapLoss`), elastic and affine
        augmentation (:meth:`Augment.unet_paper <skunet.augment.Augment.unet_paper>`),
        skorch ``EarlyStopping`` on the validation loss (``callbacks__early_stopping__*``).
        A GPU recipe. ``"fast"``: the same tiles, loss and augmentation at CPU scale (16
        base channels with batch norm, Adam at a cyclic rate peaking at 1e-3).
    **overrides
        Any :class:`~skunet.UNetSegmenter` parameter. To make training resumable after an
        interruption, name a checkpoint folder and ask for resumption:
        ``callbacks__checkpoint__dirname="runs/em", callbacks__checkpoint__resume=True``;
        fitting again continues from the last finished epoch (``warm_start=True``
        continues a finished fit instead).

    Examples
    --------
    >>> seg = em_segmenter(module__base_channels=16)
    >>> seg.get_params()["module__padding"], seg.batch_size, seg.optimizer.__name__
    ('valid', 1, 'SGD')
    >>> seg.criterion.__name__, seg.get_params()["criterion__w0"]
    ('WeightMapLoss', 10.0)
    """
    return _preset("em", recipe, overrides)
