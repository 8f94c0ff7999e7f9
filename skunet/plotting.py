"""Figures: a grid of image / truth / prediction rows."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["plot_predictions"]


def _display(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        image = image[..., 0]
    lo, hi = np.percentile(image, [1, 99.8])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)


def plot_predictions(
    images: Sequence[np.ndarray],
    y_true: Sequence[np.ndarray] | None,
    y_pred: Sequence[np.ndarray],
    path: str | os.PathLike | None = None,
    *,
    titles: Sequence[str] | None = None,
    n_classes: int | None = None,
):
    """One row per image: input, truth (if given) and prediction, classes in colour.

    Saves a PNG when ``path`` is given and returns the matplotlib figure.
    """
    from matplotlib.figure import Figure  # no pyplot: works headless and in notebooks

    columns = [("image", images)]
    if y_true is not None:
        columns.append(("truth", y_true))
    columns.append(("prediction", y_pred))
    if n_classes is None:
        n_classes = max(2, *(int(np.max(m)) + 1 for m in y_pred))
    fig = Figure(figsize=(3 * len(columns), 3 * len(images)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(images), len(columns), squeeze=False))
    for r in range(len(images)):
        for c, (name, data) in enumerate(columns):
            ax = axes[r, c]
            if name == "image":
                ax.imshow(_display(data[r]), cmap="gray")
            else:
                ax.imshow(
                    np.asarray(data[r]),
                    cmap="viridis",
                    vmin=0,
                    vmax=n_classes - 1,
                    interpolation="nearest",
                )
            ax.set_title(titles[r] if titles is not None and c == 0 else name, fontsize=9)
            ax.set_axis_off()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
