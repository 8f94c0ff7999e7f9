"""The Fine-tune dock widget (see :mod:`skunet.napari.fine_tune` for what it trains)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    create_widget,
)

from ..adaptation import adapt_input
from ..presets import segmenter
from ..pretrained import list_models
from .fine_tune import (
    ADAPTED,
    EXTENT,
    NEW,
    PAINTED,
    SCRATCH_TASKS,
    WHOLE,
    Cancelled,
    training_pairs,
    training_steps,
)
from .widget import DEFAULT_MODEL, FROM_FILE

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["FineTuneWidget"]


class FineTuneWidget(Container):
    """The dock widget (napari creates it with the viewer)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.labels = create_widget(annotation="napari.layers.Labels", label="labels")
        self.region = ComboBox(label="complete in", choices=self._regions)
        self.add_pair_button = PushButton(text="Add pair")
        self.pairs_label = Label(value="")
        names = sorted({card.name for card in list_models()})
        scratch = [NEW.format(task) for task in SCRATCH_TASKS]
        adapted = [ADAPTED] if "nuclei" in names else []
        self.base = ComboBox(label="base model", choices=[*names, *adapted, *scratch, FROM_FILE])
        if DEFAULT_MODEL in names:
            self.base.value = DEFAULT_MODEL
        self.base_file = FileEdit(label="file", filter="*.skunet *.zip", visible=False)
        self.minutes = FloatSpinBox(label="minutes", value=5.0, min=0.01, max=600.0, step=1.0)
        self.train_button = PushButton(text="Fine-tune")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=100, value=0)
        self.status = Label(value="")
        self.save_path = FileEdit(label="save as", mode="w", filter="*.skunet")
        self.overwrite = CheckBox(text="overwrite an existing file")
        self.save_button = PushButton(text="Save .skunet", enabled=False)
        self.authors = LineEdit(label="authors", value="")
        self.export_button = PushButton(text="Export for the BioImage Model Zoo", enabled=False)
        self.extend(
            [
                self.image,
                self.labels,
                self.region,
                self.add_pair_button,
                self.pairs_label,
                self.base,
                self.base_file,
                self.minutes,
                self.train_button,
                self.cancel_button,
                self.progress,
                self.status,
                self.save_path,
                self.overwrite,
                self.save_button,
                self.authors,
                self.export_button,
            ]
        )
        self.curve = _LossCurve()
        self.native.layout().addWidget(self.curve.canvas)
        self.pairs: list[tuple[Any, Any, Any]] = []
        self.model_: Any = None
        self.worker: Any = None
        self._cancel = threading.Event()
        self.base.changed.connect(lambda *_: setattr(self.base_file, "visible", self._is_file()))
        self.add_pair_button.changed.connect(self.add_pair)
        self.train_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(lambda *_: self.save())
        self.export_button.changed.connect(lambda *_: self.export())
        napari_viewer.layers.events.inserted.connect(lambda *_: self.region.reset_choices())
        napari_viewer.layers.events.removed.connect(lambda *_: self.region.reset_choices())

    # ---------------------------------------------------------------- inputs
    def _regions(self, *_: Any) -> list[str]:
        from napari.layers import Shapes

        shapes = [layer.name for layer in self._viewer.layers if isinstance(layer, Shapes)]
        return [EXTENT, WHOLE, PAINTED, *shapes]

    def _region(self) -> Any:
        name = self.region.value
        return name if name in (EXTENT, WHOLE, PAINTED) else self._viewer.layers[name]

    def _is_file(self) -> bool:
        return self.base.value == FROM_FILE

    def add_pair(self, *_: Any) -> bool:
        """Keep the chosen image, labels and region for the training; False (and the
        reason in the status) if they are not a usable pair."""
        try:
            current = self._current()
            training_pairs(*current)
        except ValueError as exc:
            self.status.value = str(exc)
            return False
        self.pairs.append(current)
        self.pairs_label.value = "training on: " + ", ".join(
            f"{im.name} / {lab.name}" for im, lab, _ in self.pairs
        )
        return True

    def _current(self) -> tuple[Any, Any, Any]:
        if self.image.value is None or self.labels.value is None:
            raise ValueError("add an image layer and a Labels layer painted on it first")
        return self.image.value, self.labels.value, self._region()

    def training_data(self) -> tuple[list, list]:
        """The images and masks of the added pairs and the current one."""
        pairs = list(self.pairs)
        current = self._current()
        if not any(p[:2] == current[:2] for p in pairs):
            pairs.append(current)
        X, y = [], []
        for pair in pairs:
            images, masks = training_pairs(*pair)
            X += images
            y += masks
        return X, y

    def base_model(self, X: list) -> Any:
        """The chosen base: a model (from the Segment widget's, if it has one loaded) or
        a new segmenter of a task's recipe; refuses images the model cannot take."""
        choice = self.base.value
        if choice.startswith(NEW.split("{")[0]):
            task = next(t for t in SCRATCH_TASKS if NEW.format(t) == choice)
            return segmenter(task, verbose=0)
        ref = str(self.base_file.value) if self._is_file() else choice
        if self._is_file() and not Path(ref).is_file():
            raise ValueError("choose a model file (.skunet or a skunet BioImage Model Zoo .zip)")
        if choice == ADAPTED:
            ref, seg = choice, adapt_input(self._segment_widget().open("nuclei"), "haematoxylin")
        else:
            seg = self._segment_widget().open(ref)
        colours = 3 if X[0].ndim == 3 else 1
        if colours != seg.n_channels_in_:
            kinds = {1: "gray", 3: "RGB"}
            gray_on_rgb = colours == 3 and seg.n_channels_in_ == 1
            other = f", or the base {ADAPTED!r}" if gray_on_rgb else ""
            raise ValueError(
                f"{ref!r} takes {kinds.get(seg.n_channels_in_, seg.n_channels_in_)} images "
                f"but {self.image.value.name!r} is {kinds[colours]}: pick a "
                f"{kinds.get(seg.n_channels_in_, '')} layer or start a new model{other}"
            )
        return seg

    # ------------------------------------------------------------------ run
    def run(self, *_: Any):
        """Start fine-tuning in a worker thread; returns the worker, or None with the
        reason in the status when the inputs are not usable."""
        from napari.qt.threading import create_worker

        try:
            X, y = self.training_data()
            base = self.base_model(X)
        except (ValueError, FileNotFoundError) as exc:
            self.status.value = str(exc)
            return None
        self._cancel = threading.Event()
        minutes = float(self.minutes.value)
        self.curve.clear()
        self.progress.value = 0
        self.status.value = f"fine-tuning on {len(X)} image(s) for up to {minutes:g} min"
        layer = self.image.value
        self.worker = create_worker(
            training_steps,
            base,
            X,
            y,
            minutes,
            self._cancel,
            _connect={"errored": self._failed},  # told in the widget, not raised again
            _start_thread=False,
        )
        self.worker.yielded.connect(lambda event: self._progress(event, minutes))
        self.worker.returned.connect(lambda model: self._trained(model, layer))
        self.worker.finished.connect(self._idle)
        self.train_button.enabled, self.cancel_button.enabled = False, True
        self.worker.start()
        return self.worker

    def cancel(self, *_: Any) -> None:
        """Stop the training at its next batch; the base model stays as it was."""
        self._cancel.set()
        self.status.value = "cancelling ..."

    def _progress(self, event: tuple[int, float, float], minutes: float) -> None:
        epoch, loss, seconds = event
        self.curve.add(epoch, loss)
        self.progress.value = min(100, int(100 * seconds / (60 * minutes)))
        self.status.value = f"epoch {epoch}: loss {loss:.4f}, {seconds:.0f} s"

    def _idle(self) -> None:
        self.train_button.enabled, self.cancel_button.enabled = True, False

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            self.status.value = "cancelled: the base model is unchanged"
            return
        from napari.utils.notifications import show_error

        self.status.value = f"failed: {exc}"
        show_error(f"skunet: {exc}")

    def _trained(self, model: Any, layer: Any) -> None:
        self.model_ = model
        self.progress.value = 100
        record = model.fine_tuned_
        name = f"{layer.name} fine-tuned"
        widget = self._segment_widget()
        widget.add_model(name, model)
        widget.image.value = layer
        widget.run()
        self.save_button.enabled = self.export_button.enabled = True
        self.status.value = (
            f"{name}: {record['epochs']} epochs in {record['seconds']:.0f} s on "
            f"{record['images']} image(s); segmenting {layer.name!r}"
        )

    def _segment_widget(self) -> Any:
        _, widget = self._viewer.window.add_plugin_dock_widget("skunet", "Segment")
        return widget

    # ------------------------------------------------------------------ out
    def _target(self, suffix: str) -> Path | None:
        path = Path(self.save_path.value)
        if self.model_ is None or path.name in ("", "."):
            self.status.value = "fine-tune a model and choose where to save it first"
            return None
        path = path.with_suffix(suffix)
        if path.exists() and not self.overwrite.value:
            self.status.value = f"{path} exists: tick 'overwrite' to replace it"
            return None
        return path

    def save(self) -> Path | None:
        """Save the fine-tuned model as ``.skunet`` at the chosen path."""
        path = self._target(".skunet")
        if path is not None:
            self.model_.save(path, overwrite=self.overwrite.value)
            self.status.value = f"saved {path}"
        return path

    def export(self):
        """Export the fine-tuned model as a BioImage Model Zoo ``.zip`` in a worker thread
        (the package is tested as it is written); returns the worker, or None."""
        from napari.qt.threading import create_worker

        from ..export import export

        path = self._target(".zip")
        authors = [name.strip() for name in self.authors.value.split(",") if name.strip()]
        if path is None:
            return None
        if not authors:
            self.status.value = "fill in the authors (who trained it, comma-separated) to export"
            return None
        started = time.perf_counter()
        self.status.value = f"exporting {path} ..."
        self.export_button.enabled = False
        self.worker = create_worker(
            export,
            self.model_,
            path,
            "bioimageio",
            overwrite=self.overwrite.value,
            authors=authors,
            _connect={"errored": self._failed},
            _start_thread=False,
        )
        self.worker.returned.connect(
            lambda out: setattr(
                self.status, "value", f"exported {out} in {time.perf_counter() - started:.0f} s"
            )
        )
        self.worker.finished.connect(lambda: setattr(self.export_button, "enabled", True))
        self.worker.start()
        return self.worker


class _LossCurve:
    """A small matplotlib plot of the training loss per epoch, in the dock."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3, 1.6), layout="constrained")
        self.axes = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(140)
        self.epochs: list[int] = []
        self.losses: list[float] = []
        self.clear()

    def clear(self) -> None:
        self.epochs, self.losses = [], []
        self._draw()

    def add(self, epoch: int, loss: float) -> None:
        self.epochs.append(epoch)
        self.losses.append(loss)
        self._draw()

    def _draw(self) -> None:
        self.axes.clear()
        self.axes.plot(self.epochs, self.losses, color="tab:blue")
        self.axes.set_xlabel("epoch", fontsize=8)
        self.axes.set_ylabel("train loss", fontsize=8)
        self.axes.tick_params(labelsize=7)
        self.canvas.draw_idle()
