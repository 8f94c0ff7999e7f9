"""The catalogue of bad inputs: each gets a clear error naming the item, before training.

Every case builds a fresh tiny segmenter with a spy callback that fails the test if an
epoch ever starts, so an error raised "during training" would not pass for one raised
up front.
"""

import numpy as np
import pytest
import tifffile
from PIL import Image
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback

from conftest import make_blobs, tiny
from skunet import UNetSegmenter
from skunet.datasets import load_dsb2018, read_image, read_image_folder

GOOD_X, GOOD_Y = make_blobs(3, shapes=[(40, 40), (36, 44)])


class NoTraining(Callback):
    def on_epoch_begin(self, net, **kwargs):
        raise AssertionError("training started despite bad input")


def spy(**kwargs):
    return tiny(callbacks=[("no_training", NoTraining())], **kwargs)


def replace(items, i, value):
    items = list(items)
    items[i] = value
    return items


F = np.float32
FIT_CASES = {
    "empty X": ([], [], ValueError, "X is empty"),
    "X a string": ("images/", GOOD_Y, TypeError, "list of images"),
    "X a dict": ({"a": GOOD_X[0]}, GOOD_Y, TypeError, r"X\[0\] is a str"),
    "stacked 2-D X": (np.zeros((4, 4)), GOOD_Y, ValueError, r"\(N, H, W\)"),
    "stacked 5-D X": (np.zeros((1, 2, 3, 4, 5)), GOOD_Y, ValueError, r"\(N, H, W\)"),
    "X/y length": (GOOD_X, GOOD_Y[:2], ValueError, "X has 3 images but y has 2 masks"),
    "size mismatch": (
        GOOD_X,
        replace(GOOD_Y, 1, np.zeros((36, 43), int)),
        ValueError,
        r"y\[1\] has shape \(36, 43\) but X\[1\] is \(36, 44\)",
    ),
    "1-D image": (
        replace(GOOD_X, 2, np.zeros(40, F)),
        GOOD_Y,
        ValueError,
        r"X\[2\] has shape \(40,\)",
    ),
    "4-D image": (
        replace(GOOD_X, 0, np.zeros((2, 40, 40, 1), F)),
        GOOD_Y,
        ValueError,
        r"X\[0\] has shape \(2, 40, 40, 1\)",
    ),
    "empty image": (
        replace(GOOD_X, 0, np.zeros((0, 40), F)),
        GOOD_Y,
        ValueError,
        r"X\[0\] has shape \(0, 40\)",
    ),
    "channels differ": (
        replace(GOOD_X, 1, np.zeros((36, 44, 3), F)),
        GOOD_Y,
        ValueError,
        r"X\[1\] has 3 channels but X\[0\] has 1",
    ),
    "channels first": ([np.zeros((3, 40, 40), F)] * 3, GOOD_Y, ValueError, "channels-first"),
    "NaN pixel": (
        replace(GOOD_X, 2, np.full((40, 40), np.nan, F)),
        GOOD_Y,
        ValueError,
        r"X\[2\] \(shape \(40, 40\)\) has 1600 NaN",
    ),
    "inf pixel": (
        replace(GOOD_X, 1, np.full((36, 44), np.inf)),
        GOOD_Y,
        ValueError,
        r"X\[1\] .* NaN or infinite",
    ),
    "complex image": (
        replace(GOOD_X, 0, np.zeros((40, 40), complex)),
        GOOD_Y,
        TypeError,
        r"X\[0\] has dtype complex128",
    ),
    "string image": (
        replace(GOOD_X, 0, np.full((40, 40), "a")),
        GOOD_Y,
        TypeError,
        r"X\[0\] has dtype <U1",
    ),
    "None image": (replace(GOOD_X, 1, None), GOOD_Y, TypeError, r"X\[1\] is a NoneType"),
    "path image": (replace(GOOD_X, 1, "a.png"), GOOD_Y, TypeError, r"X\[1\] is a str"),
    "y None": (GOOD_X, None, TypeError, "y is required"),
    "float mask": (
        GOOD_X,
        replace(GOOD_Y, 2, GOOD_Y[2].astype(float)),
        TypeError,
        r"y\[2\] has dtype float64",
    ),
    "negative label": (
        GOOD_X,
        replace(GOOD_Y, 1, np.full((36, 44), -2)),
        ValueError,
        r"y\[1\] holds negative label -2",
    ),
    "3-D mask": (
        GOOD_X,
        replace(GOOD_Y, 0, np.zeros((40, 40, 2), int)),
        ValueError,
        r"y\[0\] has shape \(40, 40, 2\)",
    ),
    "None mask": (GOOD_X, replace(GOOD_Y, 2, None), TypeError, r"y\[2\] is a NoneType"),
}


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_rejects(case):
    X, y, error, match = FIT_CASES[case]
    seg = spy()
    with pytest.raises(error, match=match):
        seg.fit(X, y)
    assert not seg.history_  # nothing trained


PARAM_CASES = {
    "label >= n_classes": (
        {"n_classes": 3},
        ValueError,
        r"y\[\d\] holds label \d+ but n_classes=3",
    ),
    "unknown target": ({"target": "instances"}, ValueError, "target must be .*got 'instances'"),
    "boundary with 2 classes": ({"target": "boundary"}, ValueError, "set n_classes=3"),
    "one class": ({"n_classes": 1}, ValueError, "n_classes must be an integer >= 2, got 1"),
    "bool mask, 3 classes": (
        {"n_classes": 3, "_bool_masks": True},
        TypeError,
        r"y\[0\] is a boolean mask, .* needs class indices",
    ),
    "bool mask, instances": (
        {"n_classes": 3, "target": "boundary", "_bool_masks": True},
        TypeError,
        r"y\[0\] is a boolean mask, .* needs instance labels",
    ),
    # prediction settings are checked by fit, not at the first predict
    "tile size": ({"tile_size": 0}, ValueError, "tile_size must be an integer >= 1 or None"),
    "tile overlap": ({"tile_overlap": 1.0}, ValueError, r"tile_overlap must be a number in \[0, 1"),
    "blend": ({"blend": "linear"}, ValueError, "blend must be one of 'gaussian', 'constant'"),
    "blend typo": ({"blend": "gausian"}, ValueError, "did you mean 'gaussian'"),
    "tta": ({"tta": "yes"}, ValueError, "tta must be True or False or one of 'dihedral', got"),
    "autocast": ({"autocast": "fp8"}, ValueError, "autocast must be .*got 'fp8'"),
    "normalize": ({"normalize": "zscore"}, ValueError, "normalize must be one of 'percentile'"),
    "postprocess": ({"postprocess": 3}, TypeError, "postprocess must be a callable or None"),
    "channels_last": ({"channels_last": "yes"}, TypeError, "channels_last must be"),
    "task": ({"task": "cells"}, ValueError, "task must be one of 'nuclei'"),
    "patch vs depth": ({"patch_size": 30}, ValueError, "patch_size=30 gives 38-pixel"),
    "valid patch": (
        {"module__padding": "valid", "patch_size": 30},
        ValueError,
        "does not accept; use patch_size=",
    ),
    "zero patch": ({"patch_size": 0}, ValueError, "patch_size must be an integer >= 1"),
    "float padding": ({"padding": 2.5}, ValueError, "padding must be an integer"),
    "misspelled": ({"max_epoch": 3}, ValueError, "max_epoch: did you mean max_epochs"),
    "missing dunder": ({"module_depth": 3}, ValueError, "did you mean module__depth"),
    "in_channels": (
        {"module__in_channels": 3},
        ValueError,
        "module__in_channels=3 but the images have 1",
    ),
    "one image to split": ({"_one_image": True}, ValueError, "train_split=None"),
    "resume without dir": (
        {"callbacks__checkpoint__resume": True},
        ValueError,
        "needs a named checkpoint dirname",
    ),
}


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_fit_rejects_parameters(case):
    kwargs, error, match = PARAM_CASES[case]
    X, y = GOOD_X, GOOD_Y
    if kwargs.pop("_one_image", False):
        X, y = X[:1], y[:1]
    if kwargs.pop("_bool_masks", False):
        y = [m > 0 for m in y]
    with pytest.raises(error, match=match):
        spy(**kwargs).fit(X, y)


@pytest.fixture(scope="module")
def fitted():
    return tiny(max_epochs=1).fit(GOOD_X, GOOD_Y)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_instances", "score"])
def test_before_fit(method):
    args = (GOOD_X, GOOD_Y) if method == "score" else (GOOD_X,)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(UNetSegmenter(), method)(*args)


PREDICT_CASES = {
    "channels differ from fit": (
        [np.zeros((8, 8, 3), F)],
        ValueError,
        r"X\[0\] has 3 channel\(s\) but the model was fitted",
    ),
    "NaN at predict": (
        [np.zeros((8, 8), F), np.full((8, 8), np.nan, F)],
        ValueError,
        r"X\[1\] .* NaN",
    ),
    "empty at predict": ([], ValueError, "X is empty"),
    "non-array at predict": ([object()], TypeError, r"X\[0\] is a object"),
}


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_instances"])
@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_rejects(fitted, method, case):
    X, error, match = PREDICT_CASES[case]
    with pytest.raises(error, match=match):
        getattr(fitted, method)(X)


def test_score_rejects_mismatched_masks(fitted):
    with pytest.raises(ValueError, match=r"y\[0\] has shape \(40, 41\) but X\[0\]"):
        fitted.score(GOOD_X, replace(GOOD_Y, 0, np.zeros((40, 41), int)))
    with pytest.raises(ValueError, match="X has 3 images but y has 1"):
        fitted.score(GOOD_X, GOOD_Y[:1])


def test_predict_instances_of_multiclass_model():
    y = [np.minimum(m, 2) for m in GOOD_Y]
    seg = tiny(n_classes=3, max_epochs=1).fit(GOOD_X, y)
    with pytest.raises(ValueError, match="n_classes=3"):
        seg.predict_instances(GOOD_X)


class TestAllowed:
    """Inputs that look odd but are legitimate must work."""

    def test_mask_without_foreground(self):
        y = [np.zeros_like(m) for m in GOOD_Y]
        seg = tiny(max_epochs=1).fit(GOOD_X, y)
        assert seg.score(GOOD_X, y) in (0.0, 1.0)

    @pytest.mark.parametrize("shape", [(1, 1), (1, 37), (29, 1)])
    def test_tiny_images(self, fitted, shape):
        assert fitted.predict([np.ones(shape, F)])[0].shape == shape

    def test_tiny_training_images(self):
        X = [np.ones((1, 1), F), np.ones((1, 7), F), np.ones((5, 1), F)]
        y = [np.ones((1, 1), int), np.zeros((1, 7), int), np.ones((5, 1), int)]
        seg = tiny(max_epochs=1, train_split=None).fit(X, y)
        assert seg.predict(X[1:2])[0].shape == (1, 7)

    @pytest.mark.parametrize("dtype", [np.uint16, np.float64, np.int32, bool])
    def test_image_dtypes(self, fitted, dtype):
        image = (np.arange(64).reshape(8, 8) % 2).astype(dtype)
        assert fitted.predict([image])[0].shape == (8, 8)


class TestLoaders:
    def _folder(self, tmp_path):
        for sub in ("images", "masks"):
            (tmp_path / sub).mkdir()
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / sub / "a.png")
        return tmp_path

    def test_truncated_tiff_named(self, tmp_path):
        path = tmp_path / "t.tif"
        tifffile.imwrite(path, np.zeros((64, 64), np.uint16))
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(ValueError, match=r"cannot read image file .*t\.tif"):
            read_image(path)

    def test_not_an_image_named(self, tmp_path):
        d = self._folder(tmp_path)
        (d / "masks" / "a.png").write_text("hello")
        with pytest.raises(ValueError, match=r"masks/a\.png"):
            read_image_folder(d / "images", d / "masks")

    def test_unpaired_named(self, tmp_path):
        d = self._folder(tmp_path)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "masks" / "b.png")
        with pytest.raises(ValueError, match=r"no partner .*b\.png"):
            read_image_folder(d / "images", d / "masks")

    def test_missing_split(self, tmp_path):
        with pytest.raises(ValueError, match="neither test/images"):
            load_dsb2018(tmp_path, split="test")


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--epochs", "0"], "--epochs must be at least 1"),
        (["demo", "--epochs", "many"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_cli_bad_input_exits_2(args, message, capsys):
    from skunet.cli import main

    with pytest.raises(SystemExit) as done:  # argparse's exit, before anything runs
        main(args)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs", [{"max_epoch": 3}, {"modul__depth": 2}, {"lr": -1.0}, {"batch_size": 0}]
)
def test_parameters_fail_before_any_data_is_converted(kwargs, monkeypatch):
    """Misspelt or invalid arguments are named before the images are read or the masks
    become targets (a spy on each step)."""
    import skunet.fitting.training

    touched = []
    for name in ("check_images", "check_masks", "training_set"):
        real = getattr(skunet.fitting.training, name)
        monkeypatch.setattr(
            skunet.fitting.training,
            name,
            lambda *a, _real=real, _n=name, **k: touched.append(_n) or _real(*a, **k),
        )
    with pytest.raises(ValueError):
        spy(**kwargs).fit(GOOD_X, GOOD_Y)
    assert touched == []
