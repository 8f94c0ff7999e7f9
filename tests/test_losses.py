import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from conftest import disks, membrane_cells
from skunet.instances import cell_instances
from skunet.losses import (
    PaddedBCEWithLogitsLoss,
    PaddedCrossEntropyLoss,
    WeightMapLoss,
    class_balance_weights,
    padded_bce_with_logits,
    padded_cross_entropy,
    unet_weight_map,
    weighted_padded_loss,
)
from skunet.tiling import IGNORE


class TestPaddedBCE:
    def test_ignored_pixels_do_not_count(self):
        logits = torch.randn(2, 1, 6, 6)
        target = torch.randint(0, 2, (2, 6, 6))
        padded = target.clone()
        padded[:, :2] = IGNORE
        expected = F.binary_cross_entropy_with_logits(logits[:, 0, 2:], target[:, 2:].float())
        torch.testing.assert_close(padded_bce_with_logits(logits, padded), expected)
        changed = logits.clone()
        changed[:, :, :2] = 100.0
        torch.testing.assert_close(padded_bce_with_logits(changed, padded), expected)

    def test_gradient_only_on_valid_pixels(self):
        logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
        target = torch.full((1, 4, 4), IGNORE)
        target[0, 1, 1] = 1
        PaddedBCEWithLogitsLoss()(logits, target).backward()
        assert (logits.grad != 0).sum() == 1

    def test_all_ignored_gives_zero_not_nan(self):
        loss = padded_bce_with_logits(torch.randn(1, 1, 2, 2), torch.full((1, 2, 2), IGNORE))
        assert loss.item() == 0.0

    def test_target_cropped_to_smaller_output(self):
        logits = torch.randn(1, 1, 2, 2)
        target = torch.full((1, 6, 6), IGNORE)
        target[0, 2:4, 2:4] = torch.tensor([[1, 0], [0, 1]])
        expected = F.binary_cross_entropy_with_logits(logits[0, 0], target[0, 2:4, 2:4].float())
        torch.testing.assert_close(padded_bce_with_logits(logits, target), expected)

    def test_wrong_channels(self):
        with pytest.raises(ValueError, match="one output channel, the network gives 3"):
            padded_bce_with_logits(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


class TestPaddedCrossEntropy:
    def test_matches_torch_with_ignore_index(self):
        logits = torch.randn(2, 3, 5, 5)
        target = torch.randint(0, 3, (2, 5, 5))
        target[0, 0] = IGNORE
        expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
        torch.testing.assert_close(padded_cross_entropy(logits, target), expected)

    def test_class_weights(self):
        logits = torch.randn(1, 3, 4, 4)
        target = torch.randint(0, 3, (1, 4, 4))
        w = torch.tensor([0.2, 1.0, 3.0])
        expected = F.cross_entropy(logits, target, weight=w)
        torch.testing.assert_close(PaddedCrossEntropyLoss(weight=w)(logits, target), expected)

    def test_output_larger_than_target(self):
        with pytest.raises(ValueError, match="larger than the target"):
            padded_cross_entropy(torch.zeros(1, 2, 5, 5), torch.zeros(1, 4, 4, dtype=torch.long))


class TestWeightedLoss:
    def test_unit_weights_equal_plain_bce(self):
        logits = torch.randn(2, 1, 6, 6)
        target = torch.randint(0, 2, (2, 8, 8))
        target[:, 0] = IGNORE
        plain = padded_bce_with_logits(logits, target)
        ones = weighted_padded_loss(logits, target, torch.ones(2, 8, 8))
        torch.testing.assert_close(plain, ones)
        torch.testing.assert_close(WeightMapLoss()(logits, target), plain)

    def test_weights_scale_pixels(self):
        logits = torch.zeros(1, 3, 1, 2)
        target = torch.tensor([[[0, 2]]])
        w = torch.tensor([[[1.0, 3.0]]])
        loss = WeightMapLoss()(logits, [target, w])
        torch.testing.assert_close(loss, torch.tensor(np.log(3) * 4 / 2, dtype=torch.float32))


class TestWeightMap:
    def test_one_pixel_gap_gets_the_peak(self):
        mask = np.zeros((20, 21), np.uint8)
        mask[4:16, 2:10] = 1
        mask[4:16, 11:19] = 1  # a one-pixel gap at column 10
        w = unet_weight_map(mask, w0=10, sigma=5)
        border = w - unet_weight_map(mask, w0=0)
        assert np.unravel_index(border.argmax(), w.shape)[1] == 10
        np.testing.assert_allclose(border[10, 10], 10 * np.exp(-4 / 50), rtol=1e-5)
        assert (border[mask == 1] == 0).all()  # the border term is on the background
        assert border[0, 0] < border[10, 10] / 5  # far from both cells it fades

    def test_class_weights_balance(self):
        mask = membrane_cells()
        wc = unet_weight_map(mask, w0=0)
        assert np.isclose(wc[mask == 1].sum(), wc[mask == 0].sum())
        assert np.isclose(wc.mean(), 1.0)
        three = np.array([[0, 0, 1, 2, 2, 2]])
        wk = class_balance_weights(three)
        assert len({round(float(wk[three == k].sum()), 5) for k in range(3)}) == 1

    def test_without_balance_every_counted_pixel_weighs_one_plus_the_gap_term(self):
        mask = membrane_cells().astype(int)
        mask[:3] = -1  # padding: weight 0
        plain = unet_weight_map(mask, w0=0, balance=False)
        assert (plain[3:] == 1).all() and (plain[:3] == 0).all()
        gaps = unet_weight_map(mask, balance=False) - plain
        expected = unet_weight_map(mask) - unet_weight_map(mask, w0=0)
        np.testing.assert_allclose(gaps, expected, rtol=1e-5, atol=1e-5)  # float32 sums
        assert gaps.max() > 5  # the gap term is unchanged

    def test_matches_brute_force_distances(self):
        labels = disks((70, 90), [(15, 15), (15, 40), (40, 28), (55, 70), (20, 75)], 9)
        ours = unet_weight_map(labels)
        dist = np.sort(
            np.stack([ndi.distance_transform_edt(labels != k) for k in range(1, 6)]), axis=0
        )
        brute = 10 * np.exp(-((dist[0] + dist[1]) ** 2) / 50) * (labels == 0)
        brute += class_balance_weights((labels > 0).astype(int))
        np.testing.assert_allclose(ours, brute, atol=1.1e-3)

    def test_binary_mask_equals_its_components(self):
        mask = membrane_cells()
        np.testing.assert_array_equal(unet_weight_map(mask), unet_weight_map(cell_instances(mask)))
        assert cell_instances(mask).max() == 16

    def test_ignored_pixels_get_no_weight(self):
        classes = membrane_cells().astype(np.int64)
        classes[:, :5] = IGNORE
        w = WeightMapLoss().weight_map(classes)
        assert (w[:, :5] == 0).all() and (w[:, 5:] > 0).all()

    def test_bad_input(self):
        with pytest.raises(ValueError, match="2-D"):
            unet_weight_map(np.zeros((2, 3, 4)))
        with pytest.raises(ValueError, match="sigma"):
            unet_weight_map(np.zeros((3, 4)), sigma=0)
