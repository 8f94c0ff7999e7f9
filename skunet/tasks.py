"""Task knowledge in one place: what each task trains on, how, and how it is scored.

:data:`TASKS` maps a task name to a :class:`Task`: its recipes (the parameters of
:mod:`skunet.presets`), the colour its images are read in, the names of its classes,
what its masks hold, and the metrics its benchmark and ``skunet evaluate`` report (names
of :data:`skunet.evaluation.METRICS`). The presets, the command line and the evaluation
all read it. ``"generic"`` is the task of a user's own data: binary or K classes, or
instances (``target="boundary"``).

A segmenter made by a preset carries its task (``task=``), and the model file stores it;
:func:`task_of` reads it, and tells the task of an older model file from the model
itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from skorch.callbacks import EarlyStopping

from .augment import Augment
from .callbacks.lr_scheduler import OneCycleLRScheduler
from .datasets import to_color
from .instances import LargestObject
from .losses import PaddedBCEWithLogitsLoss, WeightMapLoss
from .models import UNet, VGG16UNet
from .targets import TARGETS
from .validation import lookup

__all__ = ["TASKS", "Task", "as_task_color", "get_task", "task_of"]

_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "nuclei": {
        # The recipe with the best held-out object accuracy (benchmarks/nuclei.py): a
        # batch-normalised U-Net trained on each nucleus' distance to its border in 4
        # levels (target="distance"; 3 classes background / interior / boundary with
        # target="boundary"), split into nuclei by a watershed from the top levels, on
        # percentile-normalised images; predictions average the flips (tta). On a 7-min
        # proxy (nuclei_trials.json) AP@0.5: distance 0.812, 3 classes 0.793 (both tta).
        "unet": {
            "module": UNet,
            "module__depth": 4,
            "module__base_channels": 32,
            "module__batch_norm": True,
            "n_classes": 5,
            "target": "distance",
            "tta": True,
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
    "blood-cells": {
        # The CPU recipe (benchmarks/wbc.py; trials on fold 0 in
        # benchmarks/results/wbc_trials.json): every 88-120 px image in one window,
        # batch-normalised U-Net, Adam with one cycle of the learning rate (peak 3e-3)
        # that ends near zero, so the last epoch is the model: no images are held out
        # for validation (train_split=None; pass one to watch a validation curve), which
        # on fold 0 raised nucleus / whole-cell Dice from 0.954 / 0.977 to 0.968 / 0.984.
        # bfloat16 where the CPU has it natively (autocast="auto": 1.6x faster on AVX-512
        # BF16, Dice within 0.001; float32 elsewhere). Predictions average the flips
        # (tta) and keep the one cell with its holes filled, the nucleus inside it.
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
            "callbacks__lr_scheduler": OneCycleLRScheduler(),
            "train_split": None,
            "autocast": "auto",
            "tta": True,
            "postprocess": LargestObject(),
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
        # (weighted) validation loss. Labels: 1 = cell interior, 0 = membrane. The paper
        # names no rate; 1e-3 by measurement: at 0.01 the training loss became NaN in
        # epoch 3 on an H100 (benchmarks/em.py --config gpu, fold 3; in em.json).
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
            "lr": 1e-3,
            "callbacks__lr_scheduler": None,
            "callbacks": [
                ("early_stopping", EarlyStopping(monitor="valid_loss", patience=20, sink=print))
            ],
            "max_epochs": 200,
        },
    },
}
# The 2015 tiles, weight map and augmentation at CPU scale: 16 base channels with batch
# normalisation, Adam with the bundled cyclic rate (benchmarks/em.py, "cpu_paper"; it
# learns some folds and misses others: see docs/tasks/em.md).
_RECIPES["em"]["paper_small"] = {
    **{
        k: v
        for k, v in _RECIPES["em"]["paper"].items()
        if k not in ("optimizer__momentum", "callbacks__lr_scheduler")
    },
    "module__base_channels": 16,
    "module__batch_norm": True,
    "optimizer": torch.optim.Adam,
    "lr": 1e-3,
    "patches_per_image": 2,
    "max_epochs": 40,
}

# The CPU recipe (benchmarks/em.py, configuration "cpu"): the 2015 geometry left behind
# for many more updates per minute. A same-padding, batch-normalised U-Net (16 base
# channels) on 224 px patches with 16 px of mirrored context, 6 patches per slice,
# batch 8, elastic deformation plus flips. Chosen on fold 3 (slices 18-23, the weakest;
# benchmarks/results/em_trials.json), one change at a time against the earlier recipe
# (cyclic rate, plain BCE, 20 % held out, 12 epochs: V_rand 0.916): every training slice
# and one learning-rate cycle over 30 epochs in bfloat16 where the CPU has it natively
# (0.930), then the paper's weight map, w0=10, sigma=5 (0.963). About 7 minutes per fold
# on 2 AVX-512 BF16 cores.
_RECIPES["em"]["fast"] = {
    "module": UNet,
    "module__depth": 4,
    "module__base_channels": 16,
    "module__batch_norm": True,
    "n_classes": 2,
    "patch_size": 224,
    "padding": 16,
    "patches_per_image": 6,
    "batch_size": 8,
    "augment": Augment(elastic=10),
    "criterion": WeightMapLoss,
    "criterion__w0": 10.0,
    "criterion__sigma": 5.0,
    "optimizer": torch.optim.Adam,
    "lr": 2e-3,
    "callbacks__lr_scheduler": OneCycleLRScheduler(),
    "train_split": None,
    "autocast": "auto",
    "max_epochs": 30,
}
# A user's own data: a batch-normalised U-Net of modest width that trains in minutes
# on a CPU, percentile-normalised images; binary by default (``n_classes``,
# ``target="boundary"`` for instances).
_RECIPES["generic"] = {
    "unet": {
        "module": UNet,
        "module__depth": 4,
        "module__base_channels": 16,
        "module__batch_norm": True,
        "normalize": "percentile",
        "patch_size": 128,
        "padding": 16,
        "patches_per_image": 2,
        "batch_size": 8,
        "optimizer": torch.optim.Adam,
        "lr": 3e-3,
        "max_epochs": 40,
    }
}

_OBJECTS = {"ap50": "ap50", "ap75": "ap75", "f1_50": "f1_50"}
_PIXELS = {"iou": "iou", "dice": "dice"}
_WBC = ("background", "cytoplasm", "nucleus")


@dataclass(frozen=True)
class Task:
    """One segmentation task.

    Attributes
    ----------
    name : str
    summary : str
        One line for help texts.
    recipes : dict
        Recipe name -> :class:`~skunet.UNetSegmenter` parameters; the first is the
        default.
    color : {"gray", "rgb"} or None
        How image files are read for this task (None: as they are stored).
    class_names : tuple of str or None
        Names of the classes, background first (None: numbered).
    masks : str
        What the masks hold, for help texts.
    metrics : dict
        Reported name -> metric name (:data:`skunet.evaluation.METRICS`).
    label_metrics : dict
        Metrics reported in addition when the masks hold instance labels and the model
        gives instances.
    membranes : bool
        A binary model's background is the membrane between touching cells: its
        instances are cells (:func:`~skunet.instances.membrane_instances`), calibrated
        by V_rand.
    """

    name: str
    summary: str
    recipes: dict[str, dict[str, Any]]
    color: str | None
    class_names: tuple[str, ...] | None
    masks: str
    metrics: dict[str, str]
    label_metrics: dict[str, str] = field(default_factory=dict)
    membranes: bool = False

    @property
    def channels(self) -> int | None:
        """Channels of the images the task trains on (None: as the files are)."""
        return {"gray": 1, "rgb": 3}.get(self.color)

    @property
    def default_recipe(self) -> str:
        return next(iter(self.recipes))


TASKS: dict[str, Task] = {
    "nuclei": Task(
        name="nuclei",
        summary="fluorescence nuclei (DSB2018): instances",
        recipes=_RECIPES["nuclei"],
        color="gray",
        class_names=("background", *(f"distance level {k}" for k in range(1, 5))),
        masks="instance labels",
        metrics={**_PIXELS, **_OBJECTS},
    ),
    "blood-cells": Task(
        name="blood-cells",
        summary="white blood cells: background, cytoplasm, nucleus",
        recipes=_RECIPES["blood-cells"],
        color="rgb",
        class_names=_WBC,
        masks="class indices 0/1/2",
        metrics={
            **{f"dice_{c}": f"dice_class_{k}" for k, c in enumerate(_WBC)},
            **{f"iou_{c}": f"iou_class_{k}" for k, c in enumerate(_WBC)},
            "dice_whole_cell": "dice_whole",
        },
    ),
    "em": Task(
        name="em",
        summary="EM membranes (ISBI 2012): cells and membranes",
        recipes=_RECIPES["em"],
        color="gray",
        class_names=("membrane", "cell"),
        masks="0 = membrane / 255 = cell",
        membranes=True,
        metrics={
            **_PIXELS,
            "v_rand": "v_rand",
            "v_info": "v_info",
            "pixel_error": "pixel_error",
            "v_rand_protocol": "v_rand_protocol",
            "v_info_protocol": "v_info_protocol",
        },
    ),
    "generic": Task(
        name="generic",
        summary="your own data: binary or K classes, or instances",
        recipes=_RECIPES["generic"],
        color=None,
        class_names=None,
        masks="class indices (binary: any value > 0 is foreground) or instance labels",
        metrics=dict(_PIXELS),
        label_metrics=dict(_OBJECTS),
    ),
}


def get_task(name: str) -> Task:
    """The task registered under ``name``.

    >>> get_task("blood-cells").class_names
    ('background', 'cytoplasm', 'nucleus')
    """
    return lookup(TASKS, name, "task")


def task_of(seg: Any) -> Task:
    """The task of a segmenter: its ``task`` parameter, or for a model saved without
    one, told from the model (instance targets: nuclei; three classes: blood cells;
    the weight-map loss: EM; anything else: generic)."""
    name = getattr(seg, "task", None)
    if name is not None:
        return get_task(name)
    if TARGETS[seg.target].instance_labels:
        return TASKS["nuclei"]
    if seg.n_classes == 3:
        return TASKS["blood-cells"]
    criterion = seg.criterion
    if isinstance(criterion, type) and issubclass(criterion, WeightMapLoss):
        return TASKS["em"]
    return TASKS["generic"]


def as_task_color(image: np.ndarray, n_channels: int | None) -> np.ndarray:
    """An image as the model's channels: gray (1) or RGB (3) from gray, RGB or RGBA files;
    otherwise as stored, less the alpha channel of an RGBA file."""
    if n_channels == 1:
        return to_color(image, "gray")
    if n_channels == 3:
        return to_color(image, "rgb")
    if n_channels is None and image.ndim == 3 and image.shape[2] == 4:
        return image[..., :3]
    return image
