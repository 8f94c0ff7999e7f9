"""The learning-rate range test."""

import numpy as np
import pytest
import torch

from conftest import tiny


class TestLRRangeTest:
    def test_restores_the_weights_of_a_fitted_model(self, blobs):
        X, y = blobs
        seg = tiny(max_epochs=1).fit(X, y)
        before = {k: v.clone() for k, v in seg.module_.state_dict().items()}
        history = len(seg.history)
        result = seg.lr_range_test(X, y, start_lr=1e-5, end_lr=1.0, num_iter=20)
        after = seg.module_.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert len(seg.history) == history
        assert len(result.lrs) == len(result.losses) <= 20
        assert np.all(np.diff(result.lrs) > 0) and result.lrs[0] == pytest.approx(1e-5)

    def test_unfitted_model_stays_unfitted(self, blobs):
        X, y = blobs
        seg = tiny()
        result = seg.lr_range_test(X, y, num_iter=12)
        assert not hasattr(seg, "module_") and not hasattr(seg, "classes_")
        assert result.suggestion is None or result.lrs[0] <= result.suggestion <= result.lrs[-1]

    def test_stops_when_the_loss_diverges_and_plots(self, blobs):
        X, y = blobs
        result = tiny(optimizer=torch.optim.SGD).lr_range_test(
            X, y, start_lr=1e-3, end_lr=1e6, num_iter=80
        )
        assert len(result.lrs) < 80
        assert result.suggestion is not None and result.suggestion < 1e6
        ax = result.plot()
        assert ax.get_xscale() == "log" and len(ax.lines) == 2

    def test_bad_range(self, blobs):
        with pytest.raises(ValueError, match="start_lr"):
            tiny().lr_range_test(*blobs, start_lr=1.0, end_lr=0.1)
