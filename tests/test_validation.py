import numpy as np
import pytest

from skunet.intake.validation import check_images, check_masks, check_target, to_float_image


class TestCheckImages:
    def test_list_of_sizes_and_channels_last(self):
        out = check_images([np.zeros((4, 5, 3), np.uint8), np.ones((6, 7, 3), np.uint8)])
        assert [im.shape for im in out] == [(3, 4, 5), (3, 6, 7)]
        assert all(im.dtype == np.float32 for im in out)

    def test_stacked_arrays(self):
        assert [im.shape for im in check_images(np.zeros((2, 4, 5)))] == [(1, 4, 5)] * 2
        assert [im.shape for im in check_images(np.zeros((2, 4, 5, 2)))] == [(2, 4, 5)] * 2

    def test_integer_images_scaled_by_dtype(self):
        assert to_float_image(np.array([[65535]], np.uint16)).item() == 1.0
        assert to_float_image(np.array([[2.5]])).item() == 2.5

    @pytest.mark.parametrize(
        "X, error, match",
        [
            ([], ValueError, "X is empty"),
            ("image.png", TypeError, "list of images"),
            (np.zeros((4, 5)), ValueError, r"\(N, H, W\)"),
            ([np.zeros((4, 5)), "b.png"], TypeError, r"X\[1\] is a str"),
            ([np.zeros(5)], ValueError, r"X\[0\] has shape \(5,\)"),
            ([np.zeros((2, 3, 4, 1))], ValueError, r"X\[0\] has shape \(2, 3, 4, 1\)"),
            ([np.zeros((0, 4))], ValueError, "must not be empty"),
            ([np.zeros((4, 4)), np.zeros((4, 4, 2))], ValueError, r"X\[1\] has 2 channels"),
            ([np.zeros((3, 64, 64))], ValueError, "channels-first"),
            ([np.array([[1.0, np.nan]])], ValueError, r"X\[0\] \(shape \(1, 2\)\) has 1 NaN"),
            ([np.array([[np.inf]])], ValueError, "NaN or infinite"),
            ([np.array([["a"]])], TypeError, "real numbers"),
            ([np.zeros((2, 2), complex)], TypeError, "real numbers"),
        ],
    )
    def test_bad_images_are_named(self, X, error, match):
        with pytest.raises(error, match=match):
            check_images(X)

    def test_fitted_channel_count(self):
        with pytest.raises(ValueError, match=r"X\[0\] has 3 channel\(s\) but the model .* 1"):
            check_images([np.zeros((4, 4, 3))], n_channels=1)


class TestCheckMasks:
    def setup_method(self):
        self.images = check_images([np.zeros((4, 5)), np.zeros((6, 7))])

    def test_valid_masks(self):
        masks = check_masks(
            [np.zeros((4, 5), int), np.ones((6, 7, 1), np.uint8)], self.images, n_classes=2
        )
        assert [m.shape for m in masks] == [(4, 5), (6, 7)]

    @pytest.mark.parametrize(
        "y, kwargs, error, match",
        [
            (None, {}, TypeError, "y is required"),
            ([np.zeros((4, 5), int)], {}, ValueError, "X has 2 images but y has 1 masks"),
            (
                [np.zeros((4, 5), int), np.zeros((6, 6), int)],
                {},
                ValueError,
                r"y\[1\] has shape \(6, 6\) but X\[1\] is \(6, 7\)",
            ),
            (
                [np.zeros((4, 5), bool), np.zeros((6, 7), int)],
                {"n_classes": 3},
                TypeError,
                r"y\[0\] is a boolean mask, .* needs class indices \(n_classes=3",
            ),
            ([np.zeros((4, 5)), np.zeros((6, 7))], {}, TypeError, r"y\[0\] has dtype float64"),
            (
                [np.zeros((4, 5), int), np.full((6, 7), -2)],
                {},
                ValueError,
                r"y\[1\] holds negative label -2; labels must be >= 0, or -1 where nothing",
            ),
            (
                [np.zeros((4, 5), int), np.full((6, 7), 3)],
                {"n_classes": 3},
                ValueError,
                r"y\[1\] holds label 3 but n_classes=3 allows 0..2",
            ),
        ],
    )
    def test_bad_masks_are_named(self, y, kwargs, error, match):
        with pytest.raises(error, match=match):
            check_masks(y, self.images, **{"n_classes": 2, **kwargs})

    def test_binary_masks_accept_any_positive_label(self):
        check_masks([np.full((4, 5), 7), np.zeros((6, 7), int)], self.images, n_classes=2)

    def test_boolean_masks_are_binary_classes(self):
        mask = np.zeros((4, 5), bool)
        mask[1:3, 2:4] = True  # what `image > threshold` gives
        out = check_masks([mask, np.ones((6, 7), bool)], self.images, n_classes=2)
        assert out[0].dtype == np.uint8 and out[0].tolist() == mask.astype(np.uint8).tolist()


@pytest.mark.parametrize(
    "target, n_classes, match",
    [
        ("instances", 2, "target='instances'"),
        ("mask", 1, "at least 2"),
        ("boundary", 2, "n_classes=3"),
        ("mask", 2.0, "must be an int"),
    ],
)
def test_check_target(target, n_classes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        check_target(target, n_classes)
