"""Any ``nn.Module`` with the right channels works as ``module=``: here
segmentation_models_pytorch's ``Unet`` with a VGG16 encoder (the ``smp`` extra)."""

import numpy as np
import pytest
import torch

from conftest import make_blobs
from skunet import UNetSegmenter

smp = pytest.importorskip("segmentation_models_pytorch")


def test_smp_unet_with_vgg16_encoder_fits_and_predicts(tmp_path):
    X, y = make_blobs(4, shapes=[(40, 44), (37, 45)], channels=3)
    seg = UNetSegmenter(
        smp.Unet,
        module__encoder_name="vgg16",
        module__encoder_weights=None,  # "imagenet" downloads the weights on first use
        module__classes=3,
        n_classes=3,
        patch_size=24,
        padding=4,  # 32-pixel windows: smp's U-Net needs multiples of 32
        max_epochs=2,
        batch_size=4,
        verbose=0,
        random_state=0,
    )
    seg.fit(X, [np.minimum(m, 2) for m in y])
    # skunet filled in in_channels from the images; smp's own argument took the classes
    assert seg.module_.encoder is not None
    assert seg.module_(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert [p.shape for p in seg.predict(X)] == [(40, 44), (37, 45), (40, 44), (37, 45)]
    # no conv* parameters: the freezer leaves it alone; channels-last stays off by default
    assert all(p.requires_grad for p in seg.module_.parameters())
    assert not seg._channels_last()
    path = seg.save(tmp_path / "smp.skunet")
    with pytest.raises(ValueError, match=r"trust=\('segmentation_models_pytorch',\)"):
        UNetSegmenter.load(path)  # a class from another package needs the caller's trust
    loaded = UNetSegmenter.load(path, trust=("segmentation_models_pytorch",))
    np.testing.assert_allclose(loaded.predict_proba(X[:1]), seg.predict_proba(X[:1]), atol=1e-5)
