"""The Fine-tune widget in a real viewer: paint, fine-tune, segment again, cancel, save,
and the bad inputs it refuses with a message (no crash, no lost layer).

Needs an X display as tests/test_napari.py does.
"""

import os
import threading

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if not os.environ.get("DISPLAY"):
    pytest.skip(
        "napari's canvas needs an X display: install Xvfb (see .ci/run)", allow_module_level=True
    )

from conftest import make_blobs, tiny  # noqa: E402
from skunet.napari.fine_tune import (  # noqa: E402
    ADAPTED,
    EXTENT,
    NEW,
    PAINTED,
    WHOLE,
    Cancelled,
    training_pairs,
    training_steps,
)
from skunet.tiling import IGNORE  # noqa: E402

TIMEOUT_MS = 300_000


@pytest.fixture
def model_file(tmp_path):
    X, y = make_blobs(4)
    return (
        tiny(max_epochs=2, target="distance", n_classes=3).fit(X, y).save(tmp_path / "blobs.skunet")
    )


def _layers(n_planes=1, rgb=False):
    X, y = make_blobs(max(n_planes, 1), channels=3 if rgb else None)
    data = np.stack(X) if n_planes > 1 else X[0]
    labels = np.stack(y) if n_planes > 1 else y[0]
    return (
        napari.layers.Image(data, name="cells", rgb=rgb),
        napari.layers.Labels(labels.astype(np.int32), name="painted"),
    )


# ------------------------------------------------------------- training pairs
def test_pairs_mark_what_lies_outside_the_complete_region():
    image, labels = _layers()
    _, (whole,) = training_pairs(image, labels, WHOLE)
    np.testing.assert_array_equal(whole, labels.data)  # every unpainted pixel: background
    _, (extent,) = training_pairs(image, labels, EXTENT)
    rows, cols = np.nonzero(labels.data)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    np.testing.assert_array_equal(extent[box], labels.data[box])
    outside = np.ones(extent.shape, bool)
    outside[box] = False
    assert outside.any() and (extent[outside] == IGNORE).all()
    _, (cells,) = training_pairs(image, labels, PAINTED)
    assert ((cells == IGNORE) == (labels.data == 0)).all()
    shapes = napari.layers.Shapes([[[0, 0], [24, 48]]], shape_type="rectangle", name="done")
    _, (top,) = training_pairs(image, labels, shapes)
    assert (top[25:] == IGNORE).all() and (top[:24] == labels.data[:24]).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int64])
def test_unsigned_labels_are_marked_minus_one_outside(dtype):
    image, labels = _layers()
    labels = napari.layers.Labels(labels.data.astype(dtype), name="painted")
    _, (mask,) = training_pairs(image, labels, PAINTED)
    assert mask.dtype == np.int32 and mask.min() == IGNORE
    assert mask.max() == labels.data.max()


def test_stack_planes_without_annotation_are_left_out():
    image, labels = _layers(n_planes=3)
    labels.data[1] = 0
    X, _ = training_pairs(image, labels, EXTENT)
    assert len(X) == 2 and X[1].shape == (48, 48)
    np.testing.assert_array_equal(X[1], image.data[2])


@pytest.mark.parametrize(
    "shapes",
    [
        napari.layers.Shapes(ndim=2, name="done"),
        napari.layers.Shapes(
            [[[0, 0, 0], [0, 0, 48], [0, 24, 48], [0, 24, 0]]], shape_type="polygon", name="done"
        ),
    ],
    ids=["empty", "3-D"],
)
def test_shapes_must_hold_2d_outlines(shapes):
    image, labels = _layers()
    with pytest.raises(ValueError, match="shapes 'done' must hold 2-D rectangles"):
        training_pairs(image, labels, shapes)


@pytest.mark.parametrize(
    "change, message",
    [
        ("shape", "have shape (40, 48) but image 'cells' has (48, 48)"),
        ("empty", "labels 'painted' are empty"),
        ("region", "no labels of 'painted' lie in the annotated region"),
    ],
)
def test_pairs_refuse_bad_input_by_name(change, message):
    image, labels = _layers()
    region = EXTENT
    if change == "shape":
        labels = napari.layers.Labels(labels.data[:40], name="painted")
    elif change == "empty":
        labels.data = np.zeros_like(labels.data)
    else:  # a rectangle on a corner without labels
        region = napari.layers.Shapes([[[0, 0], [2, 2]]], shape_type="rectangle")
        labels.data[:3, :3] = 0
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        training_pairs(image, labels, region)


def test_training_steps_report_epochs_and_cancel(model_file):
    from skunet import UNetSegmenter

    base = UNetSegmenter.load(model_file)
    X, y = make_blobs(3)
    stop = threading.Event()
    steps = training_steps(base, X, y, minutes=5, cancel=stop)
    first = next(steps)
    assert first[0] == len(base.history) + 1 and first[1] > 0
    steps.close()  # whoever stops listening stops the training thread too
    assert stop.is_set()
    cancel = threading.Event()
    steps = training_steps(base, X, y, minutes=5, cancel=cancel)
    next(steps)
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in steps:
            pass


# ------------------------------------------------------------- in the viewer
def _widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("skunet", "Fine-tune")
    return widget


def _wait(qtbot, worker):
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT_MS):
        pass


def test_paint_fine_tune_and_segment_again(make_napari_viewer, qtbot, model_file, tmp_path):
    viewer = make_napari_viewer()
    X, y = make_blobs(1, seed=3)
    image = viewer.add_image(X[0], name="cells")
    labels = viewer.add_labels(np.zeros((48, 48), np.int32), name="painted")
    labels.data = y[0].astype(np.int32)  # painted by hand
    _, segment = viewer.window.add_plugin_dock_widget("skunet", "Segment")
    segment.use_model_file(model_file)
    widget = _widget(viewer)
    widget.image.value, widget.labels.value = image, labels
    widget.region.value = WHOLE
    widget.base.value = "model file ..."
    widget.base_file.value = model_file
    widget.minutes.value = 0.05  # one epoch: the budget is spent at the first one's end
    worker = widget.run()
    assert worker is not None, widget.status.value
    _wait(qtbot, worker)
    model = widget.model_
    assert model.fine_tuned_["images"] == 1 and model.fine_tuned_["epochs"] >= 1
    assert "fine_tune_progress" not in dict(model.callbacks or [])
    assert len(widget.curve.epochs) == model.fine_tuned_["epochs"]
    assert segment.model.value == "cells fine-tuned" and segment.segmenter() is model
    _wait(qtbot, segment.worker)
    assert viewer.layers["cells instances"].data.shape == (48, 48)
    # saved, then never over that file without the overwrite box
    widget.save_path.value = tmp_path / "mine.skunet"
    assert widget.save() == tmp_path / "mine.skunet"
    before = (tmp_path / "mine.skunet").read_bytes()
    assert widget.save() is None and "tick 'overwrite'" in widget.status.value
    assert (tmp_path / "mine.skunet").read_bytes() == before
    widget.overwrite.value = True
    assert widget.save() == tmp_path / "mine.skunet"
    pytest.importorskip("bioimageio.core")
    widget.save_path.value = tmp_path / "mine.zip"
    assert widget.export() is None and "fill in the authors" in widget.status.value
    widget.authors.value = "Ada Lovelace"
    _wait(qtbot, widget.export())  # in a worker thread: bioimageio tests it as it writes
    assert (tmp_path / "mine.zip").is_file() and "exported" in widget.status.value


def _painted_stack(viewer, n: int, name: str):
    """A stack of n blob images with their labels painted, chosen in the Fine-tune widget."""
    X, y = make_blobs(n)
    widget = _widget(viewer)
    widget.image.value = viewer.add_image(np.stack(X), name=name)
    widget.labels.value = viewer.add_labels(np.stack(y).astype(np.int32), name="painted")
    return widget


def test_a_new_model_trains_from_scratch(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _painted_stack(viewer, 2, "stack")
    widget.base.value = NEW.format("nuclei")
    widget.minutes.value = 0.01
    worker = widget.run()
    _wait(qtbot, worker)
    assert widget.model_.fine_tuned_["base"] == "new nuclei segmenter"
    assert widget.model_.fine_tuned_["images"] == 2
    _, segment = viewer.window.add_plugin_dock_widget("skunet", "Segment")
    _wait(qtbot, segment.worker)  # the stack segmented again by the new model
    assert viewer.layers["stack instances"].data.shape == (2, 48, 48)


def test_the_gray_nuclei_model_adapted_to_rgb_trains_on_a_colour_layer(make_napari_viewer, qtbot):
    """No code for an H&E user: the adapted nuclei model as the base of an RGB layer."""
    viewer = make_napari_viewer()
    X, y = make_blobs(1, shapes=[(96, 96)], channels=3)
    widget = _widget(viewer)
    widget.image.value = viewer.add_image(X[0], name="he", rgb=True)
    widget.labels.value = viewer.add_labels(y[0].astype(np.int32), name="painted")
    widget.base.value = ADAPTED
    widget.minutes.value = 0.01
    _wait(qtbot, widget.run())
    assert widget.model_.n_channels_in_ == 3 and widget.model_.adapted_["base"].startswith(
        "nuclei@"
    )
    assert widget.model_.fine_tuned_["base"].endswith(", adapted to haematoxylin")
    _, segment = viewer.window.add_plugin_dock_widget("skunet", "Segment")
    _wait(qtbot, segment.worker)  # the layer segmented again by the new RGB model
    assert viewer.layers["he instances"].data.shape == (96, 96)


def test_cancel_keeps_the_base_model(make_napari_viewer, qtbot, model_file):
    viewer = make_napari_viewer()
    widget = _painted_stack(viewer, 3, "cells")
    widget.base.value = "model file ..."
    widget.base_file.value = model_file
    widget.minutes.value = 10
    worker = widget.run()
    with qtbot.waitSignal(worker.yielded, timeout=TIMEOUT_MS):
        pass
    widget.cancel()
    _wait(qtbot, worker)
    assert widget.model_ is None and "cancelled" in widget.status.value
    assert widget.train_button.enabled and not widget.cancel_button.enabled


@pytest.mark.parametrize("bad", ["shape", "rgb", "empty", "region", "no labels layer"])
def test_bad_inputs_get_a_message_and_keep_every_layer(make_napari_viewer, model_file, bad):
    viewer = make_napari_viewer()
    X, y = make_blobs(1, channels=3 if bad == "rgb" else None)
    image = viewer.add_image(X[0], name="cells", rgb=bad == "rgb")
    painted = y[0].astype(np.int32)
    if bad == "shape":
        painted = painted[:40]
    if bad == "empty":
        painted = np.zeros_like(painted)
    widget = _widget(viewer)
    if bad != "no labels layer":
        widget.labels.value = viewer.add_labels(painted, name="painted")
    if bad == "region":
        viewer.add_shapes([[[0, 0], [3, 3]]], shape_type="rectangle", name="complete")
        widget.labels.value.data[:4, :4] = 0
        widget.region.value = "complete"
    widget.image.value = image
    widget.base.value = "model file ..."
    widget.base_file.value = model_file
    layers = [layer.name for layer in viewer.layers]
    assert widget.run() is None
    expected = {
        "shape": "have shape (40, 48)",
        "rgb": "takes gray images but 'cells' is RGB",
        "empty": "are empty",
        "region": "lie in the annotated region",
        "no labels layer": "add an image layer and a Labels layer",
    }[bad]
    assert expected in widget.status.value
    assert (ADAPTED in widget.status.value) == (bad == "rgb")  # what a gray model needs
    assert [layer.name for layer in viewer.layers] == layers
    assert widget.train_button.enabled


@pytest.mark.slow
def test_fine_tune_the_pretrained_model_on_the_sample(make_napari_viewer, qtbot, tmp_path):
    """The docs' picture: the sample's nuclei as painted labels, the pretrained model
    fine-tuned on them for a few seconds, the image segmented again."""
    import shutil

    viewer = make_napari_viewer()
    viewer.open_sample("skunet", "nuclei")
    viewer.layers["nuclei (true)"].visible = True
    widget = _widget(viewer)
    widget.image.value = viewer.layers["nuclei"]
    widget.labels.value = viewer.layers["nuclei (true)"]
    assert widget.base.value == "nuclei" and widget.region.value == EXTENT
    widget.minutes.value = 0.1
    _wait(qtbot, widget.run())
    _, segment = viewer.window.add_plugin_dock_widget("skunet", "Segment")
    _wait(qtbot, segment.worker)
    assert widget.model_.fine_tuned_["base"].startswith("nuclei@")
    assert segment.model.value == "nuclei fine-tuned", segment.model.choices
    assert segment.model.native.currentText() == "nuclei fine-tuned"
    assert int(viewer.layers["nuclei instances"].data.max()) > 10
    viewer.layers["nuclei (true)"].visible = False
    viewer.window.resize(1400, 900)
    picture = viewer.screenshot(str(tmp_path / "fine-tune.png"), canvas_only=False, flash=False)
    assert picture.shape[1] > picture.shape[0] > 300
    if os.environ.get("SKUNET_FINE_TUNE_SCREENSHOT"):  # the docs' picture, on request
        shutil.copy(tmp_path / "fine-tune.png", os.environ["SKUNET_FINE_TUNE_SCREENSHOT"])
