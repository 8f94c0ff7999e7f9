"""The training recipes of each task: the parameters of a :class:`~skunet.UNetSegmenter`,
named, one dict per task (:data:`NUCLEI`, :data:`BLOOD_CELLS`, :data:`EM`,
:data:`GENERIC`).

Each task's record in :data:`skunet.tasks.TASKS` holds its recipes and names its default;
:mod:`skunet.presets` makes segmenters of them (``nuclei_segmenter("unet")``, or
``segmenter("em", "fast")``). Each recipe says in a comment where it was chosen and
measured (``benchmarks/``).
"""

from __future__ import annotations

from typing import Any

import torch
from skorch.callbacks import EarlyStopping

from .augment import Augment
from .callbacks.lr_scheduler import OneCycleLRScheduler
from .instances import LargestObject
from .losses import PaddedBCEWithLogitsLoss, WeightMapLoss
from .models import UNet, VGG16UNet

__all__ = ["BLOOD_CELLS", "EM", "GENERIC", "NUCLEI"]

Recipes = dict[str, dict[str, Any]]

NUCLEI: Recipes = {
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
}
BLOOD_CELLS: Recipes = {
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
}
EM: Recipes = {
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
}
# The 2015 tiles, weight map and augmentation at CPU scale: 16 base channels with batch
# normalisation, Adam with the bundled cyclic rate (benchmarks/em.py, "cpu_paper"; it
# learns some folds and misses others: see docs/tasks/em.md).
EM["paper_small"] = {
    **{
        k: v
        for k, v in EM["paper"].items()
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
EM["fast"] = {
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
GENERIC: Recipes = {
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
