"""What a user watches during training: progress bars and a live plot."""

from __future__ import annotations

import io

import numpy as np
from skorch.callbacks import Callback
from skorch.callbacks import ProgressBar as _SkorchProgressBar

from ..persistence import atomic_path
from ..plotting import plot_training
from ..progress import in_notebook, use_widgets

__all__ = ["LivePlot", "ProgressBar"]


class ProgressBar(_SkorchProgressBar):
    """skorch's per-epoch progress bar, counting the batches the net really runs.

    In a notebook it is a widget when ipywidgets is installed and a text bar otherwise
    (skorch's own bar fails there without ipywidgets).
    """

    def _use_notebook(self) -> bool:
        return bool(self.detect_notebook) and use_widgets()

    def _get_batches_per_epoch_phase(self, net, dataset, training):
        if dataset is None:
            return 0
        return len(net.get_iterator(dataset, training=training))


class LivePlot(Callback):
    """Loss curves and predictions of fixed validation images, redrawn after each epoch.

    The figure (:func:`skunet.plotting.plot_training`) shows training and validation
    loss with validation IoU, then input / truth / prediction of the first ``n_images``
    validation images (training images without a validation split). In a notebook it
    is displayed once and updated in place; elsewhere, and always when ``path`` is
    given, it is written to a PNG file, replaced atomically.

    Parameters
    ----------
    n_images : int, default=3
    path : str or None, default=None
        PNG file; None writes ``live.png`` outside notebooks and no file inside them.
    every : int, default=1
        Redraw every ``every`` epochs (and after the last).
    """

    def __init__(self, n_images: int = 3, path: str | None = None, every: int = 1) -> None:
        self.n_images = n_images
        self.path = path
        self.every = every

    def initialize(self):
        if self.n_images < 1 or self.every < 1:
            raise ValueError(
                f"LivePlot needs n_images >= 1 and every >= 1, got {self.n_images}, {self.every}"
            )
        self.handle_ = None
        self.figure_ = None
        self.path_ = self.path or (None if in_notebook() else "live.png")
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        self.samples_ = None

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs) -> None:
        epoch = len(net.history)
        if epoch % self.every and epoch < net.max_epochs:
            return
        if self.samples_ is None:
            data = dataset_valid if dataset_valid is not None else dataset_train
            self.samples_ = [data[i] for i in range(min(self.n_images, len(data)))]
        images = [im for im, _ in self.samples_]
        predictor = net.predictor_
        pred = predictor.probabilities(images, finalize=predictor.classes)
        shown = [im[0] if im.shape[0] == 1 else np.moveaxis(im, 0, -1) for im in images]
        truth = [t for _, t in self.samples_]
        self.figure_ = plot_training(net, shown, truth, pred)
        if self.path_ is not None:
            with atomic_path(self.path_) as tmp:
                self.figure_.savefig(tmp, format="png", dpi=80)
        if in_notebook():
            self._show(self.figure_)

    def _show(self, fig) -> None:
        from IPython.display import Image, display

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        image = Image(data=buffer.getvalue())
        if self.handle_ is None:
            self.handle_ = display(image, display_id=True)
        else:
            self.handle_.update(image)
