import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import f1_score, jaccard_score

from skunet.metrics import confusion_matrix, dice_score, iou_score

masks = arrays(
    np.int64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.integers(0, 2)
)


class TestPixelMetrics:
    @settings(max_examples=50, deadline=None)
    @given(data=st.data())
    def test_agree_with_sklearn(self, data):
        t = data.draw(masks)
        p = data.draw(arrays(np.int64, t.shape, elements=st.integers(0, 2)))
        per_iou = iou_score(t, p, n_classes=3, average=None)
        per_dice = dice_score(t, p, n_classes=3, average=None)
        ref_iou = jaccard_score(
            t.ravel(), p.ravel(), labels=[0, 1, 2], average=None, zero_division=0
        )
        ref_dice = f1_score(t.ravel(), p.ravel(), labels=[0, 1, 2], average=None, zero_division=0)
        absent = ~np.isin([0, 1, 2], np.concatenate([t.ravel(), p.ravel()]))
        np.testing.assert_array_equal(np.isnan(per_iou), absent)
        np.testing.assert_allclose(np.nan_to_num(per_iou), ref_iou)
        np.testing.assert_allclose(np.nan_to_num(per_dice), ref_dice)

    @given(a=masks)
    def test_symmetric_and_bounded(self, a):
        b = np.roll(a, 1, axis=0)
        s = iou_score(a, b, n_classes=3)
        assert s == pytest.approx(iou_score(b, a, n_classes=3))
        assert 0.0 <= s <= 1.0
        assert iou_score(a, a, n_classes=3) == 1.0

    def test_pooled_over_lists_of_sizes(self):
        t = [np.array([[1, 1]]), np.array([[0], [1], [1]])]
        p = [np.array([[1, 0]]), np.array([[1], [1], [1]])]
        # foreground: tp 3, fp 1, fn 1
        assert iou_score(t, p) == pytest.approx(3 / 5)
        assert dice_score(t, p) == pytest.approx(6 / 8)

    def test_empty_foreground_everywhere_is_perfect(self):
        assert iou_score(np.zeros((3, 3), int), np.zeros((3, 3), int)) == 1.0

    def test_ignored_pixels_and_torch(self):
        t = torch.tensor([[0, 1, -1]])
        p = torch.tensor([[0, 1, 1]])
        assert confusion_matrix(t, p, 2).tolist() == [[1, 0], [0, 1]]

    def test_shape_mismatch_named(self):
        with pytest.raises(ValueError, match=r"mask 1: y_true has shape \(2, 2\)"):
            iou_score(
                [np.zeros((1, 1), int), np.zeros((2, 2), int)],
                [np.zeros((1, 1), int), np.zeros((2, 3), int)],
            )
