"""Augmentation: flips, elastic deformation, affine and intensity jitter."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from conftest import disks, make_blobs, membrane_cells, tiny
from skunet.augment import Augment, elastic_deform
from skunet.intake.sampling import ImageSet, PatchDataset
from skunet.losses import WeightMapLoss
from skunet.models import UNet
from skunet.tiling import IGNORE, Geometry


class TestAugment:
    def test_keeps_image_and_mask_aligned(self):
        centers = [(20, 20), (20, 60), (50, 40), (75, 20), (75, 70)]
        labels = (disks((96, 96), centers, 12) > 0).astype(np.int64)
        image = labels[None].astype(np.float32)
        aug = Augment(elastic=10, degrees=10, scale=0.1)
        for seed in range(5):
            torch.manual_seed(seed)
            x, y = aug(image, labels)
            inside = ndi.binary_erosion(y != IGNORE)  # not next to the affine fill
            wrong = ((x[0] > 0.5) != (y == 1)) & inside
            # interpolated image and nearest-neighbour labels differ only at edges
            edges = ndi.binary_dilation(find_boundaries(y, mode="thick"))
            assert not (wrong & ~edges).any(), seed
            assert wrong.sum() < 0.1 * inside.sum()
            assert not np.array_equal(y, labels)  # it did move

    def test_reproducible_with_a_seed(self):
        image = np.random.default_rng(0).random((1, 40, 40)).astype(np.float32)
        labels = membrane_cells((40, 40), step=10).astype(np.int64)
        aug = Augment.unet_paper()
        torch.manual_seed(3)
        a = aug(image, labels)
        torch.manual_seed(3)
        b = aug(image, labels)
        torch.manual_seed(4)
        c = aug(image, labels)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0])

    def test_elastic_labels_keep_their_values(self):
        labels = disks((50, 50), [(25, 25)], 10) * 7
        torch.manual_seed(0)
        _, y = elastic_deform(np.zeros((1, 50, 50), np.float32), labels, sigma=10)
        assert set(np.unique(y)) <= {0, 7}  # nearest neighbour, no blending

    def test_intensity_only_changes_the_image(self):
        labels = membrane_cells((32, 32), step=8).astype(np.int64)
        image = labels[None].astype(np.float32)
        x, y = Augment(flips=False, noise=0.1, brightness=0.2, contrast=0.2)(image, labels)
        np.testing.assert_array_equal(y, labels)
        assert not np.allclose(x, image)

    def test_colour_shifts_each_channel_on_its_own(self):
        torch.manual_seed(0)
        image = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
        labels = np.zeros((32, 32), np.int64)
        x, y = Augment(flips=False, colour=0.3)(image.copy(), labels)
        np.testing.assert_array_equal(y, labels)
        # each channel an affine map of itself, with a gain and shift of its own
        fits = [np.polyfit(image[c].ravel(), x[c].ravel(), 1) for c in range(3)]
        for gain, shift in fits:
            assert 0.7 <= gain <= 1.3 and abs(shift) <= 0.3
        assert len({round(g, 6) for g, _ in fits}) == 3
        np.testing.assert_allclose(
            x, np.stack([g * image[c] + s for c, (g, s) in enumerate(fits)]), atol=1e-5
        )

    @pytest.mark.parametrize(
        "bad", [{"elastic": -1}, {"scale": 1.5}, {"elastic_grid": 1}, {"colour": -0.1}]
    )
    def test_bad_parameters(self, bad):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Augment(**bad)

    def test_weight_map_follows_the_deformed_patch(self):
        labels = membrane_cells((80, 80)).astype(np.int64)
        image = labels[None].astype(np.float32)
        loss = WeightMapLoss()
        g = Geometry(UNet(depth=2), padding=8)
        data = PatchDataset(
            ImageSet([image], [labels]),
            g,
            48,
            augment=Augment(elastic=10),
            weight_map=loss.weight_map,
        )
        torch.manual_seed(0)
        _, (y, w) = data[0]
        y, w = y.numpy(), w.numpy()
        assert (y[:8] == IGNORE).all() and (y[8:56, 8:56] != IGNORE).mean() > 0.5
        # weights were computed on the deformed labels: every cell pixel has w_c alone,
        # every membrane pixel more (the border term)
        assert np.ptp(w[y == 1]) < 1e-5
        assert w[y == 0].min() > w[y == 1].max()

    def test_estimator_parameter_clones_and_trains(self):
        from sklearn.base import clone

        X, y = make_blobs(4)
        seg = tiny(augment=Augment(elastic=5, noise=0.05), max_epochs=1)
        assert clone(seg).augment == Augment(elastic=5, noise=0.05)
        seg.fit(X, y)
        assert np.isfinite(seg.history[-1, "train_loss"])
