import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skunet.models import UNet, VGG16UNet
from skunet.tiling import IGNORE, Geometry, label_window, reflect_indices, window


class TestWindows:
    @given(n=st.integers(2, 20), before=st.integers(0, 19), after=st.integers(0, 19))
    def test_reflect_matches_numpy_pad(self, n, before, after):
        a = np.arange(n)
        if before < n and after < n:  # numpy's single reflection
            expected = np.pad(a, (before, after), mode="reflect")
            assert a[reflect_indices(-before, n + before + after, n)].tolist() == expected.tolist()

    def test_reflect_far_beyond_and_single_pixel(self):
        assert reflect_indices(-5, 12, 2).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
        assert reflect_indices(-3, 4, 1).tolist() == [0, 0, 0, 0]

    def test_window_inside_is_a_plain_crop(self):
        im = np.arange(2 * 6 * 7.0).reshape(2, 6, 7)
        np.testing.assert_array_equal(window(im, 1, 2, 3, 4), im[:, 1:4, 2:6])

    def test_window_crop_back_inverts(self):
        im = np.random.default_rng(0).random((1, 5, 9))
        big = window(im, -7, -3, 5 + 14, 9 + 6)
        np.testing.assert_array_equal(big[:, 7:12, 3:12], im)

    def test_label_window_ignores_outside_and_border(self):
        lab = np.ones((4, 4), int)
        out = label_window(lab, -1, -1, 6, 6, keep=(2, 2, 3, 3))
        assert out[2:5, 2:5].tolist() == [[1] * 3] * 3
        assert (out[:2] == IGNORE).all() and (out[:, 5] == IGNORE).all()


class TestGeometry:
    def test_same_unet(self):
        g = Geometry(UNet(depth=3), padding=10)
        assert (g.context, g.shrink, g.output_offset) == (10, 0, 10)
        assert g.input_length(45) == 72  # 45 + 20 rounded up to a multiple of 8
        assert g.accepts_patch(44) and not g.accepts_patch(45)
        assert g.nearest_patch_sizes(45) == (44, 52)

    def test_valid_unet(self):
        g = Geometry(UNet(padding="valid"), padding=16)
        assert (g.context, g.shrink, g.output_offset) == (92, 92, 0)
        assert g.input_length(388) == 572
        assert g.input_length(389) == 572 + 16
        assert g.accepts_patch(388) and not g.accepts_patch(256)

    def test_vgg_divisor(self):
        g = Geometry(VGG16UNet(), padding=16)
        assert g.input_length(256) == 288

    @pytest.mark.parametrize("n", [1, 7, 100, 389])
    def test_input_covers(self, n):
        g = Geometry(UNet(padding="valid", depth=2), padding=0)
        length = g.input_length(n)
        out = UNet(padding="valid", depth=2)._output_size(length)
        assert out >= n and length - 2 * g.shrink == out
