"""Each task's training recipe as a ready :class:`~skunet.UNetSegmenter`.

A preset is a plain ``UNetSegmenter`` with the task's parameters filled in: every value
can be overridden by keyword (``nuclei_segmenter(max_epochs=5, device="cuda")``), and the
result clones, grid-searches and saves like any other segmenter, and carries its task
(``task=``) into the model file. :func:`segmenter` makes any task's; the task's record
(:data:`skunet.tasks.TASKS`) holds its recipes (:mod:`skunet.recipes`) and names its
default, and the functions below are the same with each task's parameters documented.
"""

from __future__ import annotations

from typing import Any

from .estimator import UNetSegmenter
from .intake.validation import lookup
from .targets import TARGETS
from .tasks import get_task

__all__ = [
    "blood_cell_segmenter",
    "em_segmenter",
    "generic_segmenter",
    "nuclei_segmenter",
    "segmenter",
]


def segmenter(task: str, recipe: str | None = None, **overrides: Any) -> UNetSegmenter:
    """The segmenter of a task's recipe (the task's record in :data:`skunet.tasks.TASKS`;
    None: its default recipe), ready to ``fit``.

    A ``target`` other than the recipe's, given without ``n_classes``, brings the classes
    that target derives (:attr:`skunet.targets.Target.preset_classes`: ``"mask"`` 2,
    ``"boundary"`` 3, ``"distance"`` 5).

    >>> seg = segmenter("generic", n_classes=4)
    >>> seg.task, seg.n_classes, seg.normalize
    ('generic', 4, 'percentile')
    >>> segmenter("nuclei", target="boundary").n_classes
    3
    """
    params = get_task(task).recipe(recipe)
    target = overrides.get("target", params.get("target", "mask"))
    if target != params.get("target", "mask") and "n_classes" not in overrides:
        overrides["n_classes"] = lookup(TARGETS, target, "target").preset_classes
    # an object passed for a parameter replaces the recipe's settings of its parts
    # (``callbacks__lr_scheduler=OneCycleLRScheduler()`` drops the recipe's
    # ``callbacks__lr_scheduler__mode``)
    for name in overrides:
        for key in [k for k in params if k.startswith(f"{name}__")]:
            del params[key]
    params.update(overrides)
    return UNetSegmenter(**params)


def nuclei_segmenter(recipe: str | None = None, **overrides: Any) -> UNetSegmenter:
    """A segmenter for fluorescence nuclei (Kaggle DSB2018), ready to ``fit``.

    Parameters
    ----------
    recipe : {"unet", "skorch_tutorial"}, default="unet" (None)
        ``"unet"``: the recipe with the best held-out AP in ``benchmarks/nuclei.py``
        (U-Net trained on 4 levels of the distance to each nucleus' border,
        ``target="distance"``, watershed instances, flips averaged, percentile
        normalisation, Adam, 60 epochs: a GPU recipe; on a CPU, lower ``max_epochs`` and
        ``module__base_channels``). ``"skorch_tutorial"``: skorch's nuclei tutorial
        (frozen ImageNet VGG16-BN encoder, BCE, SGD + CyclicLR 0.002 -> 0.2, batch 32,
        20 epochs); its weights are downloaded by torchvision on first use.
    **overrides
        Any :class:`~skunet.UNetSegmenter` parameter. ``target="mask"`` alone also sets
        ``n_classes=2`` (binary training, connected-component instances);
        ``target="boundary"`` alone sets ``n_classes=3`` (background / interior /
        boundary, watershed from the interiors).

    Examples
    --------
    >>> seg = nuclei_segmenter(max_epochs=5)
    >>> seg.target, seg.n_classes, seg.max_epochs
    ('distance', 5, 5)
    >>> nuclei_segmenter(target="mask").n_classes, nuclei_segmenter(target="boundary").n_classes
    (2, 3)
    """
    return segmenter("nuclei", recipe, **overrides)


def blood_cell_segmenter(recipe: str | None = None, **overrides: Any) -> UNetSegmenter:
    """A segmenter for white blood cells: 0 background, 1 cytoplasm, 2 nucleus.

    Parameters
    ----------
    recipe : {"fast", "lab"}, default="fast" (None)
        ``"fast"``: the best CPU recipe found so far for the benchmark's targets (nucleus
        Dice >= 0.97, whole-cell Dice >= 0.99 in <= 10 minutes on 2 cores; see
        ``benchmarks/wbc.py`` and ``docs/tasks/blood-cells.md`` for how close it comes).
        ``"lab"``: the lab's Keras recipe (ELU + dropout U-Net, 16 base channels, Adam at
        a constant 1e-4, cross-entropy, batch 8).
    **overrides
        Any :class:`~skunet.UNetSegmenter` parameter.

    Examples
    --------
    >>> seg = blood_cell_segmenter("lab")
    >>> seg.n_classes, seg.lr, seg.get_params()["module__activation"]
    (3, 0.0001, 'elu')
    """
    return segmenter("blood-cells", recipe, **overrides)


def em_segmenter(recipe: str | None = None, **overrides: Any) -> UNetSegmenter:
    """A segmenter for EM membranes (ISBI 2012): the 2015 U-Net recipe.

    Labels are 1 = cell interior, 0 = membrane (:func:`~skunet.datasets.load_isbi2012`).

    Parameters
    ----------
    recipe : {"paper", "fast", "paper_small"}, default="paper" (None)
        ``"paper"``: the paper's "valid" U-Net (64 base channels, 572 -> 388 px tiles,
        batch 1), SGD with momentum 0.99 at 1e-3, the weight map (w0=10, sigma=5)
        computed on every augmented tile (:class:`~skunet.losses.WeightMapLoss`), elastic
        and affine augmentation (:meth:`Augment.unet_paper
        <skunet.augment.Augment.unet_paper>`), skorch ``EarlyStopping`` on the validation
        loss (``callbacks__early_stopping__*``). A GPU recipe. ``"fast"``: the CPU recipe,
        which leaves the 2015 geometry behind for many more updates per minute: a
        same-padding U-Net (16 base channels, batch norm) on 224 px patches with 16 px of
        mirrored context, 6 per slice, batch 8, elastic deformation, the paper's weight
        map, Adam with one learning-rate cycle peaking at 2e-3 over 30 epochs on every
        slice (``train_split=None``), bfloat16 where the CPU has it natively (about 7
        minutes on 2 AVX-512 BF16 cores; see ``benchmarks/em.py``). ``"paper_small"``:
        the paper's tiles, loss and augmentation at CPU scale (16 base channels with
        batch norm, Adam at a cyclic rate peaking at 1e-3).
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
    >>> fast = em_segmenter("fast")
    >>> fast.criterion.__name__, fast.patch_size, fast.batch_size, fast.train_split
    ('WeightMapLoss', 224, 8, None)
    """
    return segmenter("em", recipe, **overrides)


def generic_segmenter(
    recipe: str | None = None, n_classes: int = 2, instances: bool = False, **overrides: Any
) -> UNetSegmenter:
    """A segmenter for your own data: binary, ``n_classes`` classes, or instances.

    Parameters
    ----------
    recipe : {"unet"}, default="unet" (None)
        A batch-normalised U-Net (depth 4, 16 base channels) on 128 px patches of
        percentile-normalised images, Adam at a cyclic rate peaking at 3e-3, 40 epochs:
        minutes on a CPU for a few dozen images.
    n_classes : int, default=2
        Classes of the masks (class indices ``0..n_classes-1``; with 2, any value > 0 is
        foreground).
    instances : bool, default=False
        The masks hold instance labels: train background / interior / boundary
        (``target="boundary"``, 3 classes) and split objects by watershed.
    **overrides
        Any :class:`~skunet.UNetSegmenter` parameter.

    Examples
    --------
    >>> generic_segmenter(instances=True).target, generic_segmenter(n_classes=4).n_classes
    ('boundary', 4)
    """
    if instances:
        overrides["target"] = "boundary"  # its classes from TARGETS
    else:
        overrides.setdefault("n_classes", n_classes)
    return segmenter("generic", recipe, **overrides)
