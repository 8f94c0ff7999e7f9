import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skunet.losses import (
    PaddedBCEWithLogitsLoss,
    PaddedCrossEntropyLoss,
    WeightMapLoss,
    padded_bce_with_logits,
    padded_cross_entropy,
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
