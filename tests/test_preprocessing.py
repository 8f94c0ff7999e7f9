import numpy as np
import pytest
from sklearn.base import clone

from skunet.preprocessing import ImageNormalizer


class TestImageNormalizer:
    def test_percentile_per_image_and_channel(self):
        rng = np.random.default_rng(0)
        X = [rng.random((20, 30, 2)) * [10, 1000], rng.random((8, 8, 2))]
        out = ImageNormalizer(lower=0, upper=100).fit_transform(X)
        assert out[0].shape == (20, 30, 2) and out[0].dtype == np.float32
        for im in out:
            np.testing.assert_allclose(im.min(axis=(0, 1)), 0, atol=1e-6)
            np.testing.assert_allclose(im.max(axis=(0, 1)), 1, atol=1e-6)

    def test_zscore_learns_dataset_statistics(self):
        X = [np.full((4, 4), 10.0), np.full((2, 2), 20.0)]
        norm = ImageNormalizer(method="zscore").fit(X)
        assert norm.mean_[0] == pytest.approx(12.0)
        out = norm.transform([np.full((3, 3), 12.0)])
        assert np.allclose(out[0], 0)

    def test_clone_and_errors(self):
        assert clone(ImageNormalizer(upper=99)).upper == 99
        with pytest.raises(ValueError, match="method='minmax'"):
            ImageNormalizer(method="minmax").fit([np.zeros((2, 2))])
        with pytest.raises(ValueError, match="lower < upper"):
            ImageNormalizer(lower=50, upper=10).fit([np.zeros((2, 2))])
        norm = ImageNormalizer().fit([np.zeros((2, 2))])
        with pytest.raises(ValueError, match=r"X\[0\] has 3 channel"):
            norm.transform([np.zeros((2, 2, 3))])
