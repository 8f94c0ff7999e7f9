import numpy as np
import pytest
import torch
from sklearn.base import clone

from conftest import disks, make_blobs, membrane_cells
from skunet import UNetSegmenter
from skunet.augment import Augment
from skunet.callbacks import EncoderFreezer, OneCycleLRScheduler
from skunet.instances import LargestObject
from skunet.losses import (
    PaddedBCEWithLogitsLoss,
    WeightMapLoss,
)
from skunet.models import UNet, VGG16UNet
from skunet.presets import blood_cell_segmenter, em_segmenter, nuclei_segmenter
from skunet.tasks import TASKS

FAST = dict(module__depth=2, module__base_channels=4, patch_size=24, padding=4, max_epochs=2)


class TestNucleiPreset:
    def test_default_recipe_is_the_distance_level_unet_with_flips(self):
        seg = nuclei_segmenter()
        assert isinstance(seg, UNetSegmenter)
        assert (seg.module, seg.target, seg.n_classes, seg.tta) == (UNet, "distance", 5, True)
        assert seg.normalize == "percentile"
        assert seg.get_params()["module__batch_norm"] is True

    def test_every_value_can_be_overridden(self):
        seg = nuclei_segmenter(max_epochs=3, module__base_channels=8, lr=0.01)
        assert (seg.max_epochs, seg.lr) == (3, 0.01)
        assert seg.get_params()["module__base_channels"] == 8
        # the recipe itself is not modified by an override
        assert TASKS["nuclei"].recipes["unet"]["max_epochs"] != 3

    def test_target_alone_sets_its_classes(self):
        assert nuclei_segmenter(target="mask").n_classes == 2
        assert nuclei_segmenter(target="mask", n_classes=3).n_classes == 3
        assert nuclei_segmenter(target="boundary").n_classes == 3
        assert nuclei_segmenter(target="distance", n_classes=9).n_classes == 9

    def test_unknown_recipe_lists_the_known_ones(self):
        with pytest.raises(ValueError, match=r"'skorch_tutorial', 'unet'"):
            nuclei_segmenter("stardist")

    def test_clones_with_its_parameters(self):
        seg = nuclei_segmenter(max_epochs=4)
        copy = clone(seg)
        assert copy.get_params()["module__depth"] == 4
        assert copy.max_epochs == 4 and copy.target == "distance"

    def test_fits_instance_labels_and_splits_touching_nuclei(self):
        X, y = make_blobs(6, shapes=[(48, 48)])
        # bright uint8 images: the percentile normalisation makes them like any other
        X = [(x * 40 + 60).clip(0, 255).astype(np.uint8) for x in X]
        pair = disks((48, 48), [(24, 17), (24, 31)], radius=7)
        X.append(((pair > 0) * 100 + 60).astype(np.uint8))
        y.append(pair)
        seg = nuclei_segmenter(**{**FAST, "max_epochs": 30}, lr=1e-2, random_state=0, verbose=0)
        seg.fit(X, y)
        labels = seg.predict_instances(X[-1:])[0]
        assert labels.shape == (48, 48)
        assert labels.max() >= 1


class TestSkorchTutorialRecipe:
    def test_recipe(self):
        seg = nuclei_segmenter("skorch_tutorial")
        assert seg.module is VGG16UNet
        assert seg.get_params()["module__weights"] == "IMAGENET1K_V1"
        assert (seg.patch_size, seg.padding, seg.batch_size, seg.max_epochs) == (256, 16, 32, 20)
        assert seg.criterion is PaddedBCEWithLogitsLoss
        assert seg.optimizer is torch.optim.SGD
        assert seg.get_params()["optimizer__momentum"] == 0.9

    def test_trains_gray_images_with_frozen_pretrained_encoder(self, vgg_weights_cache):
        X, y = make_blobs(4, shapes=[(40, 40)])
        seg = nuclei_segmenter(
            "skorch_tutorial",
            patch_size=16,
            padding=8,
            batch_size=4,
            max_epochs=2,
            verbose=0,
            random_state=0,
        )
        seg.fit(X, y)
        net = seg.module_
        # gray input: the ImageNet filters summed over RGB, and never updated (frozen)
        expected = vgg_weights_cache["features.0.weight"].sum(1, keepdim=True)
        torch.testing.assert_close(net.conv1[0].weight, expected)
        assert not any(p.requires_grad for n, p in net.named_parameters() if n.startswith("conv"))
        assert isinstance(dict(seg.callbacks_)["freezer"], EncoderFreezer)
        # CyclicLR from 0.002 to 0.2, stepping every batch, momentum cycled for SGD
        lrs = [b["event_lr"] for row in seg.history for b in row["batches"] if "event_lr" in b]
        assert len(lrs) == 2  # 3 training images, batch 4: one batch per epoch
        scheduler = dict(seg.callbacks_)["lr_scheduler"].lr_scheduler_
        assert scheduler.base_lrs == [0.002] * len(scheduler.base_lrs)
        assert scheduler.max_lrs == [0.2] * len(scheduler.max_lrs)
        assert seg.predict(X).shape == (4, 40, 40)


class TestNormalize:
    def test_percentile_normalisation_makes_brightness_irrelevant(self):
        X, y = make_blobs(4, shapes=[(40, 40)])
        dim = [(x * 20).clip(0, 255).astype(np.uint8) for x in X]
        bright = [(x * 200).clip(0, 255).astype(np.uint8) for x in X]
        seg = UNetSegmenter(**FAST, normalize="percentile", verbose=0, random_state=0)
        seg.fit(dim, y)
        np.testing.assert_allclose(seg.predict_proba(dim), seg.predict_proba(bright), atol=0.02)

    def test_unknown_method(self):
        seg = UNetSegmenter(**FAST, normalize="minmax", verbose=0)
        with pytest.raises(
            ValueError, match="normalize must be one of 'percentile' or None, got 'minmax'"
        ):
            seg.fit(*make_blobs(2))


class TestBloodCellPreset:
    def test_recipes(self):
        fast = blood_cell_segmenter()
        assert (fast.n_classes, fast.target) == (3, "mask")
        # chosen by cross-validation: flip TTA, the one-cell clean-up, the whole training
        # set with one learning-rate cycle (no validation hold-out), bfloat16 where native
        assert fast.tta and fast.postprocess == LargestObject()
        assert fast.train_split is None and fast.autocast == "auto"
        assert isinstance(fast.callbacks__lr_scheduler, OneCycleLRScheduler)
        assert blood_cell_segmenter().callbacks__lr_scheduler is not fast.callbacks__lr_scheduler
        lab = blood_cell_segmenter("lab")
        params = lab.get_params()
        assert params["module__activation"] == "elu"
        assert params["module__dropout"] == [0.1, 0.1, 0.2, 0.2, 0.3]
        assert (lab.lr, lab.batch_size, lab.optimizer) == (1e-4, 8, torch.optim.Adam)
        assert lab.callbacks__lr_scheduler is None  # a constant learning rate
        assert "lr_scheduler" not in dict(lab.initialize().callbacks_)
        assert blood_cell_segmenter(target="mask").n_classes == 3

    def test_a_replaced_callback_drops_the_recipes_settings_of_the_old_one(self):
        assert nuclei_segmenter("skorch_tutorial").callbacks__lr_scheduler__base_lr == 0.002
        seg = nuclei_segmenter(
            "skorch_tutorial", callbacks__lr_scheduler=OneCycleLRScheduler(pct_start=0.2)
        )
        assert not hasattr(seg, "callbacks__lr_scheduler__base_lr")
        scheduler = dict(seg.initialize_callbacks().callbacks_)["lr_scheduler"]
        assert isinstance(scheduler, OneCycleLRScheduler) and scheduler.pct_start == 0.2

    @pytest.mark.parametrize("recipe", ["fast", "lab"])
    def test_variable_sizes_round_trip_at_their_own_sizes(self, recipe):
        rng = np.random.default_rng(0)
        shapes = [(88, 88), (96, 120), (120, 116), (100, 104)]
        X, y = [], []
        for shape in shapes:
            yy, xx = np.mgrid[: shape[0], : shape[1]]
            r2 = (yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2
            mask = np.where(r2 < 150, 2, np.where(r2 < 600, 1, 0)).astype(np.uint8)
            X.append((rng.random((*shape, 3)) * 60 + mask[..., None] * 60).astype(np.uint8))
            y.append(mask)
        seg = blood_cell_segmenter(
            recipe, module__depth=2, module__base_channels=4, max_epochs=1, verbose=0
        )
        if recipe == "lab":
            seg.set_params(module__dropout=0.1)
        seg.fit(X, y)
        pred = seg.predict(X)
        assert isinstance(pred, list) and [p.shape for p in pred] == shapes
        assert [p.shape for p in seg.predict_proba(X)] == [(3, *s) for s in shapes]


class TestEMPreset:
    def small(self, **kw):
        params = dict(
            module__depth=2,
            module__base_channels=4,
            patch_size=44,
            augment=Augment(elastic=5, degrees=5),
            max_epochs=2,
            verbose=0,
            random_state=0,
        )
        return em_segmenter(**{**params, **kw})

    def test_valid_network_weighted_training_covers_odd_sizes(self):
        X = [membrane_cells((75, 91), seed=s).astype(np.float32) for s in range(4)]
        y = [(x > 0.5).astype(np.uint8) for x in X]
        seg = self.small().fit(X, y)
        assert "early_stopping" in dict(seg.callbacks_)
        assert isinstance(seg.criterion_, WeightMapLoss)
        assert np.isfinite(seg.history[-1, "valid_loss"])
        for shape in [(1, 1), (33, 517), (129, 65)]:
            image = np.random.default_rng(0).random(shape).astype(np.float32)
            for tile in (None, 96):
                p = seg.set_params(tile_size=tile).predict_proba([image])[0]
                assert p.shape == (2, *shape) and np.isfinite(p).all()

    def test_resumes_an_interrupted_run(self, tmp_path):
        X = [membrane_cells((64, 64), seed=s).astype(np.float32) for s in range(4)]
        y = [(x > 0.5).astype(np.uint8) for x in X]
        resume = dict(
            callbacks__checkpoint__dirname=str(tmp_path), callbacks__checkpoint__resume=True
        )
        self.small(max_epochs=2, **resume).fit(X, y)  # as if stopped after 2 of 3 epochs
        seg = self.small(max_epochs=3, **resume).fit(X, y)
        assert len(seg.history) == 3  # one more epoch, not three

    def test_recipes_are_not_shared(self):
        a, b = em_segmenter(), em_segmenter()
        assert a.callbacks[0][1] is not b.callbacks[0][1]
        assert a.augment == b.augment and a.augment is not b.augment
