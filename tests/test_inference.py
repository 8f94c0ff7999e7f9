import os

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_blobs, tiny
from skunet.tiling import blend_weights, tile_starts


class Pointwise(nn.Module):
    """A 1x1 network: no spatial context, so tiling must not change its output."""

    size_divisor = 1

    def __init__(self, in_channels=1, out_channels=1):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return self.proj(x)


class Constant(nn.Module):
    size_divisor = 1

    def __init__(self, in_channels=1, out_channels=3):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.5, -1.0, 2.0])[:out_channels])

    def forward(self, x):
        return self.logits.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[2:])


@pytest.fixture(scope="module")
def pointwise():
    X, y = make_blobs(3)
    return tiny(module=Pointwise, padding=0, patch_size=16, max_epochs=1).fit(X, y)


@pytest.fixture(scope="module")
def unet():
    X, y = make_blobs(3)
    return tiny(max_epochs=1).fit(X, y)


def rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


class TestTiledPrediction:
    @pytest.mark.parametrize("shape", [(97, 131), (64, 64), (33, 200), (5, 70), (200, 9)])
    @pytest.mark.parametrize("blend", ["gaussian", "constant"])
    @pytest.mark.parametrize("tile", [16, 24])  # 4 tiles a batch (spanning rows), or 1
    def test_tiles_stitch_exactly_for_a_context_free_network(self, pointwise, shape, blend, tile):
        image = rand(shape)
        whole = pointwise.set_params(tile_size=4096).predict_proba([image])[0]
        tiled = pointwise.set_params(tile_size=tile, blend=blend).predict_proba([image])[0]
        assert tiled.shape == (2, *shape)
        np.testing.assert_allclose(tiled, whole, atol=1e-6)

    def test_tile_covering_the_image_equals_untiled(self, unet):
        image = rand((40, 40))
        default = unet.set_params(tile_size=None).predict_proba([image])[0]
        covering = unet.set_params(tile_size=40 + 2 * 4).predict_proba([image])[0]
        np.testing.assert_array_equal(default, covering)

    @pytest.mark.parametrize("shape", [(1, 1), (7, 300), (129, 65), (301, 299)])
    def test_odd_sizes_with_overlapping_tiles(self, unet, shape):
        p = unet.set_params(tile_size=32, tile_overlap=0.5).predict_proba([rand(shape)])[0]
        assert p.shape == (2, *shape)
        np.testing.assert_allclose(p.sum(0), 1, atol=1e-5)

    def test_valid_unet_tiles(self):
        X, y = make_blobs(3)
        seg = tiny(module__padding="valid", patch_size=20, max_epochs=1).fit(X, y)
        image = rand((150, 97))
        tiled = seg.set_params(tile_size=80, tile_overlap=0.25).predict_proba([image])[0]
        whole = seg.set_params(tile_size=None).predict_proba([image])[0]
        assert tiled.shape == whole.shape == (2, 150, 97)
        # same network, same context: differences come only from blending near tile edges
        assert np.abs(tiled - whole).mean() < 0.05

    def test_blending_normalises_weights(self):
        X, y = make_blobs(3)
        y = [np.minimum(m, 2) for m in y]
        seg = tiny(
            module=Constant,
            n_classes=3,
            padding=0,
            patch_size=8,
            max_epochs=1,
            callbacks__lr_scheduler=None,
            lr=0.0,
        ).fit(X, y)
        p = seg.set_params(tile_size=16, tile_overlap=0.3).predict_proba([rand((71, 53))])[0]
        expected = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0).numpy()
        np.testing.assert_allclose(p, expected[:, None, None] * np.ones((1, 71, 53)), atol=1e-6)


class TestTTA:
    def test_shapes_and_flip_equivariant_network(self, pointwise):
        image = rand((37, 53))
        plain = pointwise.set_params(tta=False, tile_size=None).predict_proba([image])[0]
        tta = pointwise.set_params(tta=True).predict_proba([image])[0]
        assert tta.shape == plain.shape == (2, 37, 53)
        np.testing.assert_allclose(tta, plain, atol=1e-6)
        pointwise.set_params(tta=False)

    def test_tta_with_tiles_and_unet(self, unet):
        image = rand((90, 70))
        p = unet.set_params(tta=True, tile_size=32).predict_proba([image])[0]
        assert p.shape == (2, 90, 70)
        unet.set_params(tta=False, tile_size=None)

    def test_dihedral_averages_the_flips_of_image_and_transpose(self, unet):
        image = rand((64, 48))
        flips = unet.set_params(tta=True).predict_proba([image, image.T.copy()])
        both = unet.set_params(tta="dihedral").predict_proba([image])[0]
        expected = (flips[0] + flips[1].transpose(0, 2, 1)) / 2
        np.testing.assert_allclose(both, expected, atol=1e-5)
        assert not np.allclose(both, flips[0], atol=1e-4)  # the transposes count
        unet.set_params(tta=False)

    def test_a_view_name_other_than_dihedral_is_refused(self, unet):
        with pytest.raises(ValueError, match="tta"):
            unet.set_params(tta="rotations").predict_proba([rand((32, 32))])
        unet.set_params(tta=False)


class TestOptions:
    def test_channels_last_and_autocast(self):
        X, y = make_blobs(3)
        seg = tiny(channels_last=True, max_epochs=1).fit(X, y)
        assert seg.module_.down[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        ref = seg.predict_proba(X[:1])[0]
        low = seg.set_params(autocast=True).predict_proba(X[:1])[0]
        assert low.dtype == np.float32 and np.abs(low - ref).max() < 0.05

    @pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
    def test_mixed_precision_training(self, dtype):
        X, y = make_blobs(4)
        ref = tiny(max_epochs=2, random_state=0).fit(X, y)
        seg = tiny(max_epochs=2, random_state=0, autocast=dtype).fit(X, y)
        # the network ran in low precision, weights and losses stayed float32
        losses = seg.history[:, "train_loss"]
        assert np.all(np.isfinite(losses))
        assert not np.array_equal(losses, ref.history[:, "train_loss"])
        assert all(p.dtype == torch.float32 for p in seg.module_.parameters())
        assert (seg.grad_scaler_ is not None) == (dtype == "float16")
        if dtype == "float16":  # the scaler saw every step and found no overflow
            assert seg.grad_scaler_.get_scale() > 0
        before = [p.detach().clone() for p in seg.module_.parameters()]
        seg.partial_fit(X, y)
        assert any(not torch.equal(a, b) for a, b in zip(before, seg.module_.parameters()))
        low, full = seg.predict_proba(X[:1])[0], ref.predict_proba(X[:1])[0]
        assert low.dtype == np.float32 and np.abs(low - full).max() < 0.2

    def test_float16_gradients_reach_callbacks_unscaled(self):
        from skorch.callbacks import Callback

        class GradNorm(Callback):
            def initialize(self):
                self.norms_ = []
                return self

            def on_grad_computed(self, net, named_parameters, **kwargs):
                grads = [p.grad.norm() for _, p in named_parameters if p.grad is not None]
                self.norms_.append(float(torch.stack(grads).norm()))

        X, y = make_blobs(4)
        norms = {}
        for dtype in (False, "float16"):
            cb = GradNorm()
            tiny(max_epochs=1, autocast=dtype, callbacks=[("gn", cb)]).fit(X, y)
            norms[dtype] = cb.norms_[0]
        # the loss scale starts at 2**16: scaled gradients would be ~65,000x larger
        assert 0.5 < norms["float16"] / norms[False] < 2

    @pytest.mark.parametrize("native", [True, False])
    def test_auto_autocast_is_bfloat16_only_where_native(self, monkeypatch, native):
        from skunet import mixed_precision

        monkeypatch.setattr(mixed_precision, "native_bfloat16", lambda device: native)
        with mixed_precision.autocast_context("cpu", "auto") as ctx:
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16
            assert torch.is_autocast_enabled("cpu") == native
        assert (ctx is not None) == native

    def test_native_bfloat16_reads_the_cpu_flags(self):
        from skunet.mixed_precision import native_bfloat16

        if not os.path.exists("/proc/cpuinfo"):
            pytest.skip("reads Linux's /proc/cpuinfo")
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
        assert native_bfloat16("cpu") == bool({"avx512_bf16", "amx_bf16"} & set(flags))
        assert native_bfloat16("meta") is False

    def test_bad_autocast_fails_before_training(self):
        X, y = make_blobs(2)
        with pytest.raises(ValueError, match=r"autocast must be .*got 'fp8'"):
            tiny(autocast="fp8").fit(X, y)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"tile_size": 0}, "tile_size must be"),
            ({"tile_overlap": 1.0}, "tile_overlap"),
            ({"blend": "linear"}, "blend must be one of .*got 'linear'"),  # refused by predict
        ],
    )
    def test_bad_settings(self, unet, kwargs, match):
        with pytest.raises(ValueError, match=match):
            unet.set_params(**kwargs).predict([rand((8, 8))])
        unet.set_params(tile_size=None, tile_overlap=0.1, blend="gaussian")


class TestAgainstMONAI:
    """Identical settings give MONAI's sliding-window result."""

    def test_grid_and_weights(self):
        from monai.data.utils import compute_importance_map, dense_patch_slices
        from monai.inferers.utils import _get_scan_interval

        for size, roi, overlap in [(1000, 256, 0.25), (300, 64, 0.5), (64, 64, 0.25)]:
            interval = _get_scan_interval((size,), (roi,), 1, (overlap,))
            ref = sorted({s[0].start for s in dense_patch_slices((size,), (roi,), interval)})
            assert tile_starts(size, roi, overlap) == ref
        ref = compute_importance_map((64, 64), mode="gaussian", sigma_scale=0.125).numpy()
        np.testing.assert_allclose(blend_weights(64), ref, rtol=1e-5, atol=1e-7)

    def test_sliding_window_matches(self, unet):
        from monai.inferers import sliding_window_inference

        image = rand((200, 150))
        seg = unet.set_params(padding=0, tile_size=64, tile_overlap=0.25)
        ours = seg.predict_proba([image])[0][1]
        with torch.inference_mode():
            theirs = sliding_window_inference(
                torch.from_numpy(image)[None, None],
                roi_size=(64, 64),
                sw_batch_size=4,
                predictor=lambda x: torch.sigmoid(seg.module_(x)),
                overlap=0.25,
                mode="gaussian",
            )[0, 0].numpy()
        unet.set_params(padding=4, tile_size=None)
        assert np.abs(ours - theirs).max() <= 1e-4


def test_streamed_classes_equal_argmax_of_probabilities(unet):
    image = (rand((300, 170)) * 255).astype(np.uint8)
    seg = unet.set_params(tile_size=48, tile_overlap=0.3)
    mask = seg.predict([image])[0]
    proba = seg.predict_proba([image])[0]
    unet.set_params(tile_size=None, tile_overlap=0.1)
    assert mask.dtype == np.uint8 and mask.shape == (300, 170)
    np.testing.assert_array_equal(mask, proba.argmax(0))


class TestUncertainty:
    """predict_uncertainty: one minus the margin of the decision, from the probabilities
    predict_proba computes; the ranking of images by it."""

    def test_binary_and_class_margins(self):
        X, y = make_blobs(3, shapes=[(48, 48), (40, 56)])
        for params in (dict(), dict(n_classes=3, target="boundary")):
            seg = tiny(max_epochs=1, **params).fit(X, y)
            maps, probas = seg.predict_uncertainty(X), seg.predict_proba(X)
            for u, p in zip(maps, probas):
                top = np.sort(p, axis=0)
                np.testing.assert_allclose(u, 1 - (top[-1] - top[-2]), atol=1e-6)
                assert u.dtype == np.float32 and u.shape == p.shape[1:]
                assert 0 <= u.min() and u.max() <= 1

    def test_distance_models_judge_the_foreground_alone(self):
        X, y = make_blobs(3)
        seg = tiny(max_epochs=1, n_classes=5, target="distance").fit(X, y)
        u, p = seg.predict_uncertainty(X[:1])[0], seg.predict_proba(X[:1])[0]
        np.testing.assert_allclose(u, 1 - np.abs(1 - 2 * p[0]), atol=1e-6)

    def test_lazy_images_and_the_ranking(self):
        da = pytest.importorskip("dask.array")
        from skunet.evaluation import uncertainty_ranking

        X, y = make_blobs(3, shapes=[(64, 80)])
        seg = tiny(max_epochs=1, tile_size=32).fit(X, y)
        wanted = seg.predict_uncertainty(X[:1])[0]
        got = seg.predict_uncertainty(da.from_array(X[0], chunks=(24, 40))).compute()
        np.testing.assert_allclose(got, wanted, atol=1e-6)
        noisy = X[2] + np.random.default_rng(0).normal(0, 0.6, X[2].shape).astype(np.float32)
        ranking = uncertainty_ranking(seg, [X[0], noisy, X[1]])
        assert sorted(i for i, _ in ranking) == [0, 1, 2]
        scores = [s for _, s in ranking]
        assert scores == sorted(scores, reverse=True)
        means = [float(m.mean()) for m in seg.predict_uncertainty([X[0], noisy, X[1]])]
        assert ranking[0] == (int(np.argmax(means)), max(means))
