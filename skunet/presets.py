"""Each task's training recipe as a ready :class:`~skunet.UNetSegmenter`.

A preset is a plain ``UNetSegmenter`` with the task's parameters filled in: every value
can be overridden by keyword (``nuclei_segmenter(max_epochs=5, device="cuda")``), and the
result clones, grid-searches and saves like any other segmenter. :data:`RECIPES` holds
the parameters themselves, for reading or for building variants.
"""

from __future__ import annotations

from typing import Any

import torch

from .estimator import UNetSegmenter
from .losses import PaddedBCEWithLogitsLoss
from .models import UNet, VGG16UNet
from .validation import lookup

__all__ = ["RECIPES", "blood_cell_segmenter", "nuclei_segmenter"]

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
        # The best CPU recipe so far (benchmarks/wbc.py; fold 0: nucleus Dice 0.957,
        # whole cell 0.979 in 7.5 minutes on 2 cores, short of the 0.97 / 0.99 targets):
        # every 88-120 px image in one window, batch-normalised U-Net, Adam with a cyclic
        # rate whose amplitude halves every cycle (triangular2).
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
}


def _preset(task: str, recipe: str, overrides: dict[str, Any]) -> UNetSegmenter:
    params = dict(lookup(RECIPES[task], recipe, f"{task} recipe"))
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
