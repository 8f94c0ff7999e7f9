"""The Segment widget: a skunet model on an image layer, in a worker thread.

Pick an image layer and a model (a pretrained name from :func:`skunet.pretrained.list_models`,
or a ``.skunet`` file / BioImage Model Zoo ``.zip`` that skunet wrote), choose what to add
(instances as a Labels layer, classes as a Labels layer, probabilities as an Image layer),
and press *Segment*. Threshold, split and flip averaging start at the model's own
(calibrated) settings; *rescale* resizes the image for the network (2 for a 20x image and
a 40x model, :mod:`skunet.prediction.rescale`). Stacks are segmented plane by plane (the
last two axes, or the two before the colour axis of an RGB layer), with a progress bar;
the result keeps the layer's scale and translation and replaces an earlier result of the
same name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    create_widget,
)

from ..pretrained import list_models, open_model

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["OUTPUTS", "SegmentWidget", "segment"]

OUTPUTS = ("instances", "classes", "probabilities")
FROM_FILE = "model file ..."
# chosen at first where it is registered: the zoo's first model, gray fluorescence nuclei
# (the model list is in name order, where "blood-cells" comes first)
DEFAULT_MODEL = "nuclei"


def segment(
    seg: Any,
    data: np.ndarray,
    rgb: bool,
    output: str,
    threshold: float | None,
    split: float | None,
    scale: float = 1.0,
):
    """Yield ``(planes done, planes)`` while segmenting each 2-D plane of ``data`` (an
    RGB layer's planes keep their colour axis), and return the stacked result: labels
    for "instances" / "classes", ``(..., K, H, W)`` float32 probabilities otherwise."""
    from ..datasets import as_task_color

    spatial = data.shape[-3:-1] if rgb else data.shape[-2:]
    lead = data.shape[: data.ndim - (3 if rgb else 2)]
    planes = np.asarray(data).reshape(-1, *data.shape[len(lead) :])
    results = []
    for i, plane in enumerate(planes):
        image = as_task_color(np.asarray(plane), seg.n_channels_in_)
        if output == "instances":
            result = seg.predict_instances([image], threshold, split, scale=scale)[0]
        elif output == "classes":
            result = seg.predict([image], scale=scale)[0]
        else:
            result = seg.predict_proba([image], scale=scale)[0].astype(np.float32)
        results.append(result)
        yield i + 1, len(planes)
    if output == "instances" and len(results) > 1:  # one id per object over the stack
        offsets = np.cumsum([0] + [int(r.max()) for r in results[:-1]])
        results = [np.where(r > 0, r + o, 0) for r, o in zip(results, offsets)]
    stacked = np.stack(results)
    return stacked.reshape(*lead, *stacked.shape[1:-2], *spatial)


class SegmentWidget(Container):
    """The dock widget (napari creates it with the viewer)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._cache: dict[str, Any] = {}
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self._added: list[str] = []  # models fine-tuned in this viewer
        self.model = ComboBox(label="model", choices=self._model_choices)
        if DEFAULT_MODEL in self.model.choices:
            self.model.value = DEFAULT_MODEL
        self.model_file = FileEdit(label="file", filter="*.skunet *.zip", visible=False)
        self.output = ComboBox(label="output", choices=list(OUTPUTS), value="instances")
        self.tta = CheckBox(text="average flips (tta)")
        self.views: bool | str = True  # what the box turns on: the model's own ("dihedral")
        self.threshold = FloatSpinBox(label="threshold", min=0.01, max=0.99, step=0.05)
        self.split_objects = CheckBox(text="split touching objects", value=True)
        self.split = FloatSpinBox(label="split", min=0.0, max=100.0, step=0.1)
        self.rescale = FloatSpinBox(
            label="rescale",
            value=1.0,
            min=0.1,
            max=10.0,
            step=0.25,
            tooltip="resize the image by this factor for the model (its training magnification "
            "over the image's: 2 for a 20x image and a 40x model); results at the image's size",
        )
        self.run_button = PushButton(text="Segment")
        self.status = Label(value="")
        self.extend(
            [
                self.image,
                self.model,
                self.model_file,
                self.output,
                self.tta,
                self.threshold,
                self.split_objects,
                self.split,
                self.rescale,
                self.run_button,
                self.status,
            ]
        )
        self.model.changed.connect(self._model_changed)
        self.model_file.changed.connect(self._model_changed)
        self.split_objects.changed.connect(lambda on: setattr(self.split, "enabled", on))
        self.run_button.changed.connect(self.run)
        self.worker: Any = None
        self._model_changed()

    # ------------------------------------------------------------------ model
    def _model_ref(self) -> str | None:
        if self.model.value != FROM_FILE:
            return self.model.value
        path = Path(self.model_file.value)
        return str(path) if path.is_file() else None

    def segmenter(self) -> Any:
        """The chosen model, loaded once."""
        ref = self._model_ref()
        if ref is None:
            raise ValueError("choose a model file (.skunet or a skunet BioImage Model Zoo .zip)")
        return self.open(ref)

    def open(self, ref: str) -> Any:
        """The model ``ref`` names (a pretrained name, a file or a name given to
        :meth:`add_model`), loaded once."""
        if ref not in self._cache:
            self._cache[ref] = open_model(ref)
        return self._cache[ref]

    def _model_choices(self, *_: Any) -> list[str]:
        # a callable, so that napari's reset of the choices keeps the added models
        return [*sorted({card.name for card in list_models()}), *self._added, FROM_FILE]

    def add_model(self, name: str, seg: Any) -> None:
        """Offer a fitted segmenter (a fine-tuned one) in the model list, chosen."""
        self._cache[name] = seg
        if name not in self._added:
            self._added.append(name)
            self.model.reset_choices()
        if self.model.value == name:
            self._model_changed()
        self.model.value = name

    def use_model_file(self, path: str | Path) -> None:
        """Select a model file (the reader of ``.skunet`` files calls this)."""
        self.model_file.value = Path(path)
        self.model.value = FROM_FILE

    def _model_changed(self, *_: Any) -> None:
        self.model_file.visible = self.model.value == FROM_FILE
        try:
            seg = self.segmenter()
        except (ValueError, FileNotFoundError) as exc:
            self.status.value = str(exc)
            return
        p = seg.predictor_
        self.tta.value = bool(seg.tta)
        self.views = seg.tta or True
        self.output.choices = [o for o in OUTPUTS if o != "instances" or p.gives_instances]
        if p.gives_instances:
            settings = p.instance_settings()
            self.threshold.value = settings["threshold"]
            self.split_objects.value = settings["split"] is not None
            if settings["split"] is not None:
                self.split.value = settings["split"]
        self.status.value = f"{self._model_ref()}: task {seg.task}, {seg.n_classes} classes"

    # ------------------------------------------------------------------- run
    def run(self, *_: Any):
        """Segment the chosen layer in a worker thread; returns the started worker."""
        from napari.qt.threading import create_worker

        layer = self.image.value
        if layer is None:
            self.status.value = "add an image layer first"
            return None
        seg = self.segmenter()
        seg.set_params(tta=self.views if self.tta.value else False)
        output = self.output.value
        split = self.split.value if self.split_objects.value else None
        started = time.perf_counter()
        self.worker = create_worker(
            segment,
            seg,
            layer.data,
            bool(layer.rgb),
            output,
            self.threshold.value,
            split,
            self.rescale.value,
            _progress={"desc": f"skunet: {output}"},
            _connect={"errored": self._failed},  # told in the widget, not raised again
            _start_thread=False,
        )
        self.worker.yielded.connect(self._progress)
        self.worker.returned.connect(lambda result: self._add(layer, output, result, started))
        self.run_button.enabled = False
        self.worker.finished.connect(lambda: setattr(self.run_button, "enabled", True))
        self.worker.start()
        return self.worker

    def _progress(self, done_total: tuple[int, int]) -> None:
        done, total = done_total
        self.status.value = f"segmented {done} of {total} plane(s)"

    def _failed(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        self.status.value = f"failed: {exc}"
        show_error(f"skunet: {exc}")

    def _add(self, layer: Any, output: str, result: np.ndarray, started: float) -> None:
        name = f"{layer.name} {output}"
        scale, translate = list(layer.scale), list(layer.translate)
        if output == "probabilities":  # a class axis before the image's two
            scale = [*scale[:-2], 1.0, *scale[-2:]]
            translate = [*translate[:-2], 0.0, *translate[-2:]]
        if name in self._viewer.layers:
            self._viewer.layers[name].data = result
        elif output == "probabilities":
            self._viewer.add_image(result, name=name, scale=scale, translate=translate)
        else:
            self._viewer.add_labels(result, name=name, scale=scale, translate=translate)
        seconds = time.perf_counter() - started
        found = f"{int(result.max())} objects" if output == "instances" else output
        self.status.value = f"{found} in {seconds:.1f} s"
