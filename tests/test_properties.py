"""Property-based tests: any image size and channel count, exact inverses, metric bounds."""

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import make_blobs, tiny
from skunet.metrics import dice_score, iou_score
from skunet.tiling import IGNORE, label_window, window


@functools.cache
def fitted(padding: str, channels: int):
    X, y = make_blobs(3, channels=channels if channels > 1 else None)
    patch = 24 if padding == "same" else 20
    return tiny(max_epochs=1, module__padding=padding, patch_size=patch).fit(X, y)


sizes = st.integers(1, 600)


@settings(max_examples=30, deadline=None)
@given(padding=st.sampled_from(["same", "valid"]), channels=st.integers(1, 4), h=sizes, w=sizes)
def test_prediction_has_the_input_size(padding, channels, h, w):
    seg = fitted(padding, channels)
    shape = (h, w) if channels == 1 else (h, w, channels)
    image = np.random.default_rng(h * w).random(shape, dtype=np.float32)
    proba = seg.predict_proba([image])[0]
    assert proba.shape == (2, h, w)
    assert np.isfinite(proba).all()


@settings(max_examples=100, deadline=None)
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    top=st.integers(0, 40),
    left=st.integers(0, 40),
    bottom=st.integers(0, 40),
    right=st.integers(0, 40),
)
def test_window_then_crop_is_identity(h, w, top, left, bottom, right):
    image = np.random.default_rng(0).random((2, h, w))
    big = window(image, -top, -left, h + top + bottom, w + left + right)
    np.testing.assert_array_equal(big[:, top : top + h, left : left + w], image)
    labels = np.arange(h * w).reshape(h, w)
    lab = label_window(labels, -top, -left, h + top + bottom, w + left + right)
    np.testing.assert_array_equal(lab[top : top + h, left : left + w], labels)
    assert (lab == IGNORE).sum() == lab.size - labels.size


masks = arrays(
    np.int64, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 3)
)


@settings(max_examples=100, deadline=None)
@given(a=masks, data=st.data())
def test_metrics_symmetric_bounded_and_perfect_on_identity(a, data):
    b = data.draw(arrays(np.int64, a.shape, elements=st.integers(0, 3)))
    for metric in (iou_score, dice_score):
        s = metric(a, b, n_classes=4)
        assert 0.0 <= s <= 1.0
        assert s == metric(b, a, n_classes=4)
        assert metric(a, a, n_classes=4) == 1.0
    # Dice >= IoU, class by class
    iou = iou_score(a, b, n_classes=4, average=None)
    dice = dice_score(a, b, n_classes=4, average=None)
    present = ~np.isnan(iou)
    assert (dice[present] >= iou[present] - 1e-12).all()
