"""Figures: image / truth / prediction grids (classes or instances), training curves,
the learning-rate schedule, and the live-training figure of
:class:`skunet.callbacks.LivePlot`.

Figures are made with ``matplotlib.figure.Figure``, never pyplot, so they work headless,
in scripts and in notebooks (where a returned figure is displayed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "plot_history",
    "plot_instances",
    "plot_lr_schedule",
    "plot_predictions",
    "plot_training",
]


def _display(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        image = image[..., 0]
    lo, hi = np.percentile(image, [1, 99.8])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: works headless and in notebooks

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: str | os.PathLike | None):
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _grid(
    images: Sequence[np.ndarray],
    columns: list[tuple[str, Sequence[np.ndarray] | None]],
    draw: Callable,
    path: str | os.PathLike | None,
    titles: Sequence[str] | None,
    fig=None,
):
    """An image column then ``columns`` (skipping None), one row per image, drawn into
    ``fig`` (a figure or subfigure) or a new figure."""
    columns = [("image", images)] + [(n, d) for n, d in columns if d is not None]
    if fig is None:
        fig = _figure(3 * len(columns), 3 * len(images))
    axes = fig.subplots(len(images), len(columns), squeeze=False)
    for r in range(len(images)):
        for c, (name, data) in enumerate(columns):
            ax = axes[r, c]
            if name == "image":
                ax.imshow(_display(data[r]), cmap="gray")
            else:
                draw(ax, np.asarray(data[r]), images[r])
            ax.set_title(titles[r] if titles is not None and c == 0 else name, fontsize=9)
            ax.set_axis_off()
    return _save(fig, path)


def plot_predictions(
    images: Sequence[np.ndarray],
    y_true: Sequence[np.ndarray] | None,
    y_pred: Sequence[np.ndarray] | None = None,
    path: str | os.PathLike | None = None,
    *,
    titles: Sequence[str] | None = None,
    n_classes: int | None = None,
    fig=None,
):
    """One row per image: input, truth and prediction (each if given), classes in colour.

    Saves a PNG when ``path`` is given and returns the matplotlib figure (``fig``, a
    figure or subfigure to draw into, when given).
    """
    if n_classes is None:
        shown = [m for masks in (y_true, y_pred) if masks is not None for m in masks]
        n_classes = max(2, *(int(np.max(m)) + 1 for m in shown))

    def draw(ax, classes, image):
        ax.imshow(classes, cmap="viridis", vmin=0, vmax=n_classes - 1, interpolation="nearest")

    columns = [("truth", y_true), ("prediction", y_pred)]
    return _grid(images, columns, draw, path, titles, fig)


def plot_instances(
    images: Sequence[np.ndarray],
    y_true: Sequence[np.ndarray] | None,
    y_pred: Sequence[np.ndarray] | None = None,
    path: str | os.PathLike | None = None,
    *,
    titles: Sequence[str] | None = None,
    more: dict[str, Sequence[np.ndarray]] | None = None,
    predicted: str = "predicted instances",
):
    """One row per image: input, true and predicted instances (each if given) as overlays,
    then the columns of ``more`` (name -> label images), e.g. a second model's.
    ``predicted`` names the column of ``y_pred`` (which model gave them, say).

    Each object gets its own colour (``skimage.color.label2rgb`` over the image), so
    merged or split nuclei are visible. Saves a PNG when ``path`` is given.
    """
    from skimage.color import label2rgb

    def draw(ax, labels, image):
        gray = _display(image)
        if gray.ndim == 3:
            gray = gray[..., :3].mean(axis=-1)
        ax.imshow(label2rgb(labels, gray, bg_label=0, alpha=0.35, image_alpha=1.0))

    columns = [("true instances", y_true), (predicted, y_pred)]
    return _grid(images, columns + list((more or {}).items()), draw, path, titles)


def plot_history(net, path: str | os.PathLike | None = None, *, ax=None):
    """Training and validation loss per epoch, with validation IoU on a second axis.

    ``net`` is a fitted (or fitting) segmenter; returns the figure, saved as PNG when
    ``path`` is given.
    """
    fig = _figure(6, 3) if ax is None else ax.figure
    ax = ax if ax is not None else fig.subplots()
    history = net.history
    epochs = [row["epoch"] for row in history]
    for key, style in (("train_loss", "-"), ("valid_loss", "--")):
        values = [row.get(key, np.nan) for row in history]
        if not np.isnan(values).all():
            ax.plot(epochs, values, style, marker=".", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ious = [row.get("valid_iou", np.nan) for row in history]
    handles, labels = ax.get_legend_handles_labels()
    if not np.isnan(ious).all():
        twin = ax.twinx()
        twin.plot(epochs, ious, color="tab:green", marker=".", label="valid IoU")
        twin.set_ylabel("IoU")
        h, lab = twin.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="center right")
    return _save(fig, path)


def plot_lr_schedule(net, n_train_images: int, path: str | os.PathLike | None = None, *, ax=None):
    """The learning rate of every planned training batch (``net``'s ``lr_scheduler``).

    ``n_train_images`` is the number of images ``fit`` trains on (after the validation
    split); with ``patches_per_image`` and ``batch_size`` it gives the batches per epoch.
    A fitted net's recorded learning rates are drawn over the plan.
    """
    from sklearn.base import clone

    planner = net if hasattr(net, "callbacks_") else clone(net).initialize_callbacks()
    scheduler = dict(planner.callbacks_).get("lr_scheduler")
    if not hasattr(scheduler, "planned_lrs"):
        raise ValueError(
            "plot_lr_schedule needs the net's lr_scheduler to be a CyclicLRScheduler or "
            f"OneCycleLRScheduler, not {type(scheduler).__name__}"
        )
    batches = max(1, -(-n_train_images * net.patches_per_image // net.batch_size))
    planned = scheduler.planned_lrs(planner, batches)
    fig = _figure(6, 2.5) if ax is None else ax.figure
    ax = ax if ax is not None else fig.subplots()
    ax.plot(np.arange(1, planned.size + 1) / batches, planned, label="planned")
    history = getattr(net, "history_", None) or []
    recorded = [b["event_lr"] for row in history for b in row["batches"] if "event_lr" in b]
    if recorded:
        ax.plot(np.arange(1, len(recorded) + 1) / batches, recorded, "--", label="recorded")
        ax.legend(fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    return _save(fig, path)


def plot_training(
    net,
    images: Sequence[np.ndarray],
    y_true: Sequence[np.ndarray],
    y_pred: Sequence[np.ndarray],
    path: str | os.PathLike | None = None,
):
    """The live-training figure: loss curves above an image / truth / prediction grid."""
    fig = _figure(9, 2.5 + 2.2 * len(images))
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.5, 2.2 * len(images)])
    plot_history(net, ax=top.subplots())
    plot_predictions(images, y_true, y_pred, n_classes=max(2, net.n_classes), fig=bottom)
    return _save(fig, path)
