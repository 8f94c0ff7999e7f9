"""What the Fine-tune widget trains: your own cells from labels painted in napari.

Pick an image layer and the Labels layer painted on it (by hand, or the Segment
widget's result corrected by hand), say where the labels are complete (the labels'
extent, all of the image, or the rectangles of a Shapes layer: cells outside are not
taught as background), a base model (a pretrained one, a model file, or a new model of
a task's recipe) and a budget in minutes, and press *Fine-tune*. Training runs
:func:`skunet.pretrained.fine_tune` in a worker thread, with its progress and loss
curve; *Cancel* stops it and keeps the base model. The new model joins the Segment
widget's list and segments the image again; it can be saved as ``.skunet`` or exported
for the BioImage Model Zoo, never over an existing file unless *overwrite* is ticked.
Stacks train on each plane that holds annotation; *Add pair* adds more image / labels
layers to the same training.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from skorch.callbacks import Callback

from ..intake.annotation import labelled_only
from ..pretrained import fine_tune
from ..tasks import TASKS

__all__ = [
    "ADAPTED",
    "EXTENT",
    "NEW",
    "PAINTED",
    "WHOLE",
    "Cancelled",
    "training_pairs",
    "training_steps",
]

EXTENT = "the labels' extent"
WHOLE = "all of the image"
PAINTED = "the painted cells only"
NEW = "new model: {} recipe"
# the gray nuclei model adapted to RGB (skunet.adaptation), for H&E and bright-field
# layers that nuclei-he does not know
ADAPTED = "nuclei, adapted to RGB (H&E, bright-field)"
# tasks whose default recipe trains on Labels as napari paints them (``generic`` needs
# its class count first)
SCRATCH_TASKS = tuple(name for name in TASKS if name != "generic")


class Cancelled(Exception):
    """Training was cancelled from the widget."""


def _annotated(plane: np.ndarray, region: str | np.ndarray) -> np.ndarray:
    """Where ``plane``'s labels are complete: everywhere, the labels' bounding box, the
    painted cells alone (no background is taught), or a given boolean mask (a Shapes
    layer's)."""
    if isinstance(region, np.ndarray):
        return region
    if region == WHOLE:
        return np.ones(plane.shape, dtype=bool)
    if region == PAINTED:
        return plane > 0
    rows, cols = np.nonzero(plane)
    out = np.zeros(plane.shape, dtype=bool)
    if rows.size:
        out[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    return out


def training_pairs(
    image: Any, labels: Any, region: str | Any = EXTENT
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training images and masks of an image layer and its Labels layer.

    Each 2-D plane (an RGB layer's planes keep their colour axis) with annotation in
    ``region`` is one image; its mask holds the labels where they are complete and
    ``IGNORE`` (-1) elsewhere. ``region`` is :data:`EXTENT`, :data:`WHOLE`,
    :data:`PAINTED` (a few cells painted in a crowd: what lies between them is not taught
    as background either) or a Shapes layer whose shapes (2-D, applied to every plane)
    mark it.

    Raises ``ValueError`` naming the layers when a layer is multiscale, the shapes
    differ, the labels are empty, or no labels lie in the region.
    """
    for layer in (image, labels):
        if getattr(layer, "multiscale", False):
            raise ValueError(
                f"{layer.name!r} is multiscale: fine-tune on a single-scale crop of it "
                "(its labels painted at full resolution)"
            )
    rgb = bool(getattr(image, "rgb", False))
    data, painted = np.asarray(image.data), np.asarray(labels.data)
    spatial = data.shape[:-1] if rgb else data.shape
    if painted.shape != spatial:
        raise ValueError(
            f"labels {labels.name!r} have shape {painted.shape} but image {image.name!r} "
            f"has {spatial}{' (and colour)' if rgb else ''}: paint the labels on this image"
        )
    if not painted.any():
        raise ValueError(f"labels {labels.name!r} are empty: paint some cells first")
    if not isinstance(region, str):
        if region.ndim != 2 or not len(region.data):  # checked before rasterising
            raise ValueError(
                f"shapes {region.name!r} must hold 2-D rectangles (or polygons) around "
                "the complete labels"
            )
        region = region.to_masks(mask_shape=spatial[-2:]).any(0)
    height, width = spatial[-2:]
    planes = data.reshape(-1, height, width, *data.shape[len(spatial) :])
    X, y = [], []
    for plane, lab in zip(planes, painted.reshape(-1, height, width)):
        inside = _annotated(lab, region)
        if not (lab[inside] > 0).any():
            continue
        X.append(plane)
        y.append(labelled_only(lab, inside))
    if not X:
        raise ValueError(
            f"no labels of {labels.name!r} lie in the annotated region: paint cells inside "
            "the shapes, or choose another region"
        )
    return X, y


class Reporter(Callback):
    """Sends ``(epoch, train loss, seconds)`` after every epoch; raises
    :class:`Cancelled` at the next batch once ``cancel`` is set."""

    def __init__(self, events: queue.Queue, cancel: threading.Event) -> None:
        self.events, self.cancel = events, cancel

    def on_train_begin(self, net, **kwargs) -> None:
        self.start_ = time.perf_counter()

    def on_batch_end(self, net, **kwargs) -> None:
        if self.cancel.is_set():
            raise Cancelled("fine-tuning cancelled")

    def on_epoch_end(self, net, **kwargs) -> None:
        loss = net.history[-1].get("train_loss", float("nan"))
        self.events.put((len(net.history), float(loss), time.perf_counter() - self.start_))


def training_steps(
    base: Any, X: list, y: list, minutes: float, cancel: threading.Event
) -> Iterator[tuple[int, float, float]]:
    """Fine-tune ``base`` (a fitted or new segmenter) on ``X, y`` for ``minutes`` in a
    thread of its own, yielding ``(epoch, train loss, seconds)`` after each epoch, and
    return the new model (:func:`~skunet.pretrained.fine_tune`). ``cancel`` stops it:
    :class:`Cancelled` is raised and ``base`` is unchanged."""
    events: queue.Queue = queue.Queue()
    name = "fine_tune_progress"
    kept = [(n, cb) for n, cb in base.callbacks or [] if n != name]
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            callbacks = [*kept, (name, Reporter(events, cancel))]
            # the widget's "complete in" says where the labels are complete: not guessed
            outcome["model"] = fine_tune(
                base, X, y, minutes=minutes, partial=False, callbacks=callbacks
            )
        except BaseException as exc:  # handed to the generator's caller
            outcome["error"] = exc
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="skunet fine-tune", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        if thread.is_alive():  # the caller stopped listening: stop training too
            cancel.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    model = outcome["model"]
    model.set_params(callbacks=[(n, cb) for n, cb in model.callbacks if n != name])
    return model
