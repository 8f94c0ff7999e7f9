import numpy as np
import torch

from skunet.augment import flip_rotate
from skunet.intake.sampling import ImageSet, PatchDataset, WholeImageCollate
from skunet.models import UNet
from skunet.tiling import IGNORE, Geometry


def ramp_set(shape=(30, 40)):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(1, *shape)
    return ImageSet([image], [image[0].astype(np.int64)])


class TestPatchDataset:
    def test_patch_and_context_shapes(self):
        ds = PatchDataset(ramp_set(), Geometry(UNet(depth=2), 4), 16, patches_per_image=3)
        assert len(ds) == 3
        x, y = ds[0]
        assert x.shape == (1, 24, 24) and y.shape == (24, 24)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert (y[:4] == IGNORE).all() and (y[:, -4:] == IGNORE).all()
        assert (y[4:20, 4:20] != IGNORE).all()

    def test_image_and_labels_stay_aligned(self):
        # labels equal the pixel values, so every augmented pair must agree
        ds = PatchDataset(ramp_set(), Geometry(UNet(depth=2), 4), 16)
        for _ in range(30):
            x, y = ds[0]
            valid = y != IGNORE
            assert torch.equal(x[0][valid].long(), y[valid])

    def test_small_images_are_mirrored_and_labels_kept(self):
        ds = PatchDataset(ramp_set((5, 7)), Geometry(UNet(depth=2), 4), 16, augment=False)
        x, y = ds[0]
        assert x.shape == (1, 24, 24)
        assert int((y != IGNORE).sum()) == 5 * 7  # the whole image, once

    def test_unannotated_pixels_are_ignored_wherever_augmentation_moves_them(self):
        # labels equal the pixel values, except a left band nobody annotated (-1)
        image = np.arange(30 * 40, dtype=np.float32).reshape(1, 30, 40)
        labels = image[0].astype(np.int64)
        labels[:, :10] = IGNORE
        ds = PatchDataset(ImageSet([image], [labels]), Geometry(UNet(depth=2), 4), 16)
        for _ in range(30):
            x, y = ds[0]
            valid = y != IGNORE
            assert (y >= IGNORE).all() and torch.equal(x[0][valid].long(), y[valid])
            assert (x[0][valid].long() % 40 >= 10).all()  # none from the band

    def test_augmentation_reproducible_with_torch_seed(self):
        ds = PatchDataset(ramp_set(), Geometry(UNet(depth=2), 4), 16)
        torch.manual_seed(3)
        a = [ds[0][0] for _ in range(5)]
        torch.manual_seed(3)
        b = [ds[0][0] for _ in range(5)]
        assert all(torch.equal(u, v) for u, v in zip(a, b))

    def test_flip_rotate_covers_all_eight_symmetries(self):
        im = np.arange(9).reshape(1, 3, 3)
        seen = {flip_rotate(im, im[0])[0].tobytes() for _ in range(200)}
        assert len(seen) == 8

    def test_custom_augment_callable(self):
        calls = []

        def aug(x, y):
            calls.append(x.shape)
            return x * 0, y

        ds = PatchDataset(ramp_set(), Geometry(UNet(depth=2), 4), 16, augment=aug)
        assert ds[0][0].abs().sum() == 0 and calls == [(1, 24, 24)]


class TestWholeImageCollate:
    def test_pads_batch_and_ignores_padding(self):
        g = Geometry(UNet(depth=2), 4)
        a = (np.ones((1, 10, 12), np.float32), np.ones((10, 12), np.int64))
        b = (np.ones((1, 7, 20), np.float32), np.zeros((7, 20), np.int64))
        x, y = WholeImageCollate(g)([a, b])
        assert x.shape == (2, 1, 20, 28)  # (10 + 8, 20 + 8) rounded up to multiples of 4
        assert int((y[0] != IGNORE).sum()) == 120 and int((y[1] != IGNORE).sum()) == 140
        assert (y[0, 4:14, 4:16] == 1).all()
