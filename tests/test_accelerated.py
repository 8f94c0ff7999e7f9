"""UNetSegmenter composed with skorch's AccelerateMixin, on the CPU."""

import numpy as np
import pytest
import torch

from conftest import make_blobs, tiny

accelerate = pytest.importorskip("accelerate")


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Accelerate keeps one process-wide state; each test builds its own Accelerator."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def small(**kw):
    from skunet.accelerated import AcceleratedUNetSegmenter

    return tiny(cls=AcceleratedUNetSegmenter, device=None, **kw)


def test_fit_predict_save_like_the_plain_segmenter(tmp_path):
    from skunet import UNetSegmenter

    X, y = make_blobs(6)
    seg = small(accelerator=accelerate.Accelerator(cpu=True)).fit(X, y)
    plain = tiny().fit(X, y)
    # same seed, same data, full precision: the same training
    np.testing.assert_allclose(
        seg.history[:, "train_loss"], plain.history[:, "train_loss"], rtol=1e-4
    )
    assert seg.predict(X).shape == (6, 48, 48)
    path = seg.save(tmp_path / "m.skunet")
    loaded = UNetSegmenter.load(path)
    np.testing.assert_allclose(loaded.predict_proba(X[:2]), seg.predict_proba(X[:2]), atol=1e-6)


def test_bf16_mixed_precision_trains():
    X, y = make_blobs(6)
    accelerator = accelerate.Accelerator(cpu=True, mixed_precision="bf16")
    seg = small(accelerator=accelerator, max_epochs=3).fit(X, y)
    assert all(np.isfinite(seg.history[:, "train_loss"]))
    assert accelerator.mixed_precision == "bf16"
    assert all(p.dtype == torch.float32 for p in seg.module_.parameters())  # master weights
