"""Task knowledge in one place: what each task trains on, how, and how it is scored.

:data:`TASKS` maps a task name to a :class:`Task`, one record per task: the colour its
images are read in, the names of its classes, what its masks hold, its training recipes
(written out, with where each was measured, in :mod:`skunet.recipes`) and which is the
default, and the metrics its benchmark and ``skunet evaluate`` report (names of
:data:`skunet.evaluation.METRICS`, :func:`task_metrics`). The presets
(:func:`skunet.presets.segmenter`), the command line and the evaluation read it; a new
task is one record here. ``"generic"`` is the task of a user's own data: binary or K
classes, or instances (``target="boundary"``).

A segmenter made by a preset carries its task (``task=``), and the model file stores it;
:func:`task_of` reads it, and tells the task of an older model file from the model
itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from . import recipes
from .datasets import as_task_color
from .evaluation import evaluate
from .intake.validation import lookup
from .losses import WeightMapLoss
from .targets import TARGETS

__all__ = ["TASKS", "Task", "as_task_color", "get_task", "task_metrics", "task_of"]

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
    recipes : dict
        Recipe name -> :class:`~skunet.UNetSegmenter` parameters (:mod:`skunet.recipes`).
    default_recipe : str
        The recipe the task's preset and ``skunet train`` use when none is named.
    membranes : bool
        A binary model's background is the membrane between touching cells: its
        instances are cells (:func:`~skunet.instances.membrane_instances`), calibrated
        by V_rand.
    """

    name: str
    summary: str
    color: str | None
    class_names: tuple[str, ...] | None
    masks: str
    metrics: dict[str, str]
    recipes: dict[str, dict[str, Any]]
    default_recipe: str
    label_metrics: dict[str, str] = field(default_factory=dict)
    membranes: bool = False

    def __post_init__(self) -> None:
        if self.default_recipe not in self.recipes:
            raise ValueError(
                f"task {self.name!r}: default_recipe {self.default_recipe!r} is not one of "
                f"its recipes {sorted(self.recipes)}"
            )

    def recipe(self, name: str | None = None) -> dict[str, Any]:
        """A copy of the parameters of the recipe ``name`` (None: the default), with
        ``task`` set: callbacks and augmentations in it are never shared between
        segmenters.

        >>> TASKS["em"].recipe("fast")["patch_size"], TASKS["em"].recipe()["task"]
        (224, 'em')
        """
        name = self.default_recipe if name is None else name
        params = copy.deepcopy(dict(lookup(self.recipes, name, f"{self.name} recipe")))
        return {**params, "task": self.name}

    @property
    def channels(self) -> int | None:
        """Channels of the images the task trains on (None: as the files are)."""
        return {"gray": 1, "rgb": 3}.get(self.color)


TASKS: dict[str, Task] = {
    "nuclei": Task(
        name="nuclei",
        summary="fluorescence nuclei (DSB2018): instances",
        color="gray",
        class_names=("background", *(f"distance level {k}" for k in range(1, 5))),
        masks="instance labels",
        metrics={**_PIXELS, **_OBJECTS},
        recipes=recipes.NUCLEI,
        default_recipe="unet",
    ),
    "blood-cells": Task(
        name="blood-cells",
        summary="white blood cells: background, cytoplasm, nucleus",
        color="rgb",
        class_names=_WBC,
        masks="class indices 0/1/2",
        metrics={
            **{f"dice_{c}": f"dice_class_{k}" for k, c in enumerate(_WBC)},
            **{f"iou_{c}": f"iou_class_{k}" for k, c in enumerate(_WBC)},
            "dice_whole_cell": "dice_whole",
        },
        recipes=recipes.BLOOD_CELLS,
        default_recipe="fast",
    ),
    "em": Task(
        name="em",
        summary="EM membranes (ISBI 2012): cells and membranes",
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
        recipes=recipes.EM,
        default_recipe="paper",
    ),
    "generic": Task(
        name="generic",
        summary="your own data: binary or K classes, or instances",
        color=None,
        class_names=None,
        masks="class indices (binary: any value > 0 is foreground) or instance labels",
        metrics=dict(_PIXELS),
        label_metrics=dict(_OBJECTS),
        recipes=recipes.GENERIC,
        default_recipe="unet",
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


def task_metrics(seg: Any, X: Any, y: Any) -> dict[str, Any]:
    """What the segmenter's task reports (:data:`TASKS`) on ``X`` and ``y``.

    nuclei: IoU, Dice, AP at IoU 0.5 and 0.75, F1 at 0.5; blood cells: Dice and IoU per
    class and whole-cell Dice; EM: IoU, Dice, V_rand, V_info, pixel error; generic: IoU
    and Dice, plus the object metrics when the masks hold instance labels and the model
    gives instances. The first keys are ``task`` and ``images``.
    """
    task = task_of(seg)
    scores = evaluate(seg, X, y, task.metrics, task.label_metrics)
    return {"task": task.name, "images": len(X), **scores}
