import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Freezer

from conftest import make_blobs, tiny
from skunet import UNetSegmenter
from skunet.callbacks import CyclicLRScheduler, IoUScoring, SegmentationCheckpoint
from skunet.losses import PaddedBCEWithLogitsLoss, PaddedCrossEntropyLoss
from skunet.models import UNet, VGG16UNet
from skunet.preprocessing import ImageNormalizer


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56), (37, 45)])
    return tiny(max_epochs=3).fit(X, y), X, y


class TestShapes:
    def test_proba_class_axis_first_and_sums_to_one(self, fitted):
        seg, X, _ = fitted
        proba = seg.predict_proba(X)
        assert isinstance(proba, list) and len(proba) == len(X)
        for p, x in zip(proba, X):
            assert p.shape == (2, *x.shape) and p.dtype == np.float32
            np.testing.assert_allclose(p.sum(0), 1, atol=1e-6)

    def test_predict_is_argmax_of_proba(self, fitted):
        seg, X, _ = fitted
        for m, p in zip(seg.predict(X), seg.predict_proba(X)):
            assert m.dtype == np.uint8
            np.testing.assert_array_equal(m, p.argmax(0))

    def test_uniform_stack_in_ndarray_out(self, fitted):
        seg, X, _ = fitted
        stack = np.stack([X[0], X[3]])
        assert seg.predict(stack).shape == (2, 48, 48)
        assert seg.predict_proba(stack).shape == (2, 2, 48, 48)
        assert isinstance(seg.predict([X[0], X[3]]), np.ndarray)
        np.testing.assert_array_equal(seg.predict(stack)[1], seg.predict([X[3]])[0])

    @pytest.mark.parametrize("shape", [(1, 1), (1, 9), (5, 3), (17, 31), (33, 64), (130, 70)])
    def test_any_size_gives_input_size(self, fitted, shape):
        seg, _, _ = fitted
        image = np.random.default_rng(0).random(shape).astype(np.float32)
        assert seg.predict([image])[0].shape == shape
        assert seg.predict_proba([image])[0].shape == (2, *shape)

    def test_batching_does_not_change_predictions(self, fitted):
        seg, X, _ = fitted
        together = seg.predict_proba([X[0], X[3]])
        alone = [seg.predict_proba([x])[0] for x in (X[0], X[3])]
        np.testing.assert_allclose(together[0], alone[0], atol=1e-5)
        np.testing.assert_allclose(together[1], alone[1], atol=1e-5)

    def test_valid_unet_covers_odd_sizes(self, blobs):
        X, y = blobs
        seg = tiny(module__padding="valid", module__depth=2, patch_size=20, max_epochs=1)
        seg.fit(X, y)
        assert seg.geometry_.context == seg.geometry_.shrink == 20  # input = output + 40
        for shape in [(1, 1), (7, 13), (37, 45), (64, 50)]:
            assert seg.predict_proba([np.ones(shape, np.float32)])[0].shape == (2, *shape)

    def test_multichannel_and_three_classes(self):
        X, y = make_blobs(4, channels=3)
        y = [np.where(m > 1, 2, m) for m in y]
        seg = tiny(n_classes=3).fit(X, y)
        assert seg.module_.in_channels == 3 and seg.module_.out_channels == 3
        assert isinstance(seg.criterion_, PaddedCrossEntropyLoss)
        assert seg.predict_proba(X[:1])[0].shape == (3, 48, 48)
        assert seg.n_channels_in_ == 3 and seg.classes_.tolist() == [0, 1, 2]

    def test_boundary_target_and_instances(self, blobs):
        X, y = blobs
        seg = tiny(target="boundary", n_classes=3, max_epochs=1).fit(X, y)
        assert seg.predict_proba(X[:1])[0].shape[0] == 3
        labels = seg.predict_instances(X)
        assert [lab.shape for lab in labels] == [x.shape for x in X]
        assert 0 <= seg.score(X, y) <= 1


class TestLearning:
    def test_learns_blobs(self, blobs):
        X, y = blobs
        seg = tiny(max_epochs=25, lr=0.01, patches_per_image=4, module__base_channels=8)
        seg.fit(X, y)
        assert seg.score(X, y) > 0.8
        inst = seg.predict_instances(X)
        assert all(lab.max() >= 1 for lab in inst)

    def test_boolean_masks_fit_a_binary_model(self, blobs):
        X, y = blobs
        booleans = [m > 0 for m in y]  # as scikit-image thresholding gives them
        a = tiny(random_state=0).fit(X, booleans)
        b = tiny(random_state=0).fit(X, [m.astype(np.uint8) for m in booleans])
        for p, q in zip(a.predict_proba(X), b.predict_proba(X)):
            np.testing.assert_array_equal(p, q)
        assert 0 <= a.score(X, booleans) <= 1

    def test_random_state_gives_identical_weights(self, blobs):
        a = tiny(random_state=5).fit(*blobs)
        b = tiny(random_state=5).fit(*blobs)
        c = tiny(random_state=6).fit(*blobs)
        for (k, va), vb in zip(a.module_.state_dict().items(), b.module_.state_dict().values()):
            torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
        assert any(
            not torch.equal(va, vc)
            for va, vc in zip(a.module_.state_dict().values(), c.module_.state_dict().values())
        )

    def test_partial_fit_continues(self, blobs):
        seg = tiny(max_epochs=1).fit(*blobs)
        seg.partial_fit(*blobs)
        assert len(seg.history) == 2
        with pytest.raises(ValueError, match="fitted on 1-channel images"):
            seg.partial_fit(*make_blobs(2, channels=2))

    def test_nothing_written_to_cwd(self, blobs, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        tiny().fit(*blobs)
        assert os.listdir(tmp_path) == []


class TestCallbacks:
    def test_bundled_callbacks_present(self, fitted):
        seg = fitted[0]
        cbs = dict(seg.callbacks_)
        assert isinstance(cbs["freezer"], Freezer)
        assert isinstance(cbs["lr_scheduler"], CyclicLRScheduler)
        assert isinstance(cbs["iou"], IoUScoring)
        assert isinstance(cbs["checkpoint"], SegmentationCheckpoint)
        assert [n for n, _ in seg.callbacks_][-1] == "print_log"
        assert {"valid_iou", "valid_iou_best", "event_lr", "event_cp"} <= set(
            seg.history[-1]
        ) | set(seg.history[-1, "batches", 0])

    def test_each_callback_removable(self, blobs):
        seg = tiny(
            callbacks__freezer=None,
            callbacks__lr_scheduler=None,
            callbacks__iou=None,
            callbacks__checkpoint=None,
        ).fit(*blobs)
        names = [n for n, _ in seg.callbacks_]
        assert not {"freezer", "lr_scheduler", "iou", "checkpoint"} & set(names)
        assert "valid_iou" not in seg.history[-1]
        assert all(g["lr"] == seg.lr for g in seg.optimizer_.param_groups)

    def test_callback_replaceable_and_routable(self, blobs):
        seg = tiny(
            callbacks__iou=IoUScoring(name="my_iou"), callbacks__checkpoint__monitor="my_iou_best"
        ).fit(*blobs)
        assert "my_iou" in seg.history[-1]
        assert dict(seg.callbacks_)["checkpoint"].monitor == "my_iou_best"
        assert dict(seg.callbacks_)["checkpoint"].saved_ is False  # reset after fit

    def test_freezer_freezes_vgg_encoder(self, blobs):
        X, y = blobs
        X = [np.repeat(x[..., None], 3, axis=2) for x in X]
        seg = UNetSegmenter(
            VGG16UNet,
            patch_size=32,
            padding=0,
            max_epochs=2,
            batch_size=4,
            verbose=0,
            random_state=0,
        )
        torch.manual_seed(0)
        initial = {k: v.clone() for k, v in VGG16UNet().state_dict().items()}
        seg.fit(X, y)
        params = dict(seg.module_.named_parameters())
        assert all(not p.requires_grad for n, p in params.items() if n.startswith("conv"))
        assert all(p.requires_grad for n, p in params.items() if not n.startswith("conv"))
        state = seg.module_.state_dict()
        for name in ("conv1.0.weight", "conv5.34.weight", "conv3.15.weight"):
            torch.testing.assert_close(state[name], initial[name])
        assert not torch.equal(state["final.weight"], initial["final.weight"])

    def test_freezer_warns_about_a_users_conv_parameters(self, blobs):
        class Mine(torch.nn.Module):
            def __init__(self, in_channels=1, out_channels=1):
                super().__init__()
                self.conv1 = torch.nn.Conv2d(in_channels, 4, 3, padding=1)
                self.head = torch.nn.Conv2d(4, out_channels, 1)

            def forward(self, x):
                return self.head(torch.relu(self.conv1(x)))

        with pytest.warns(UserWarning, match=r"froze 2 parameters of Mine .*conv1\.weight"):
            tiny(module=Mine, max_epochs=1).fit(*blobs)
        mine = tiny(module=Mine, max_epochs=1, callbacks__freezer=None).fit(*blobs)
        assert all(p.requires_grad for p in mine.module_.parameters())

        class AllConv(torch.nn.Module):
            def __init__(self, in_channels=1, out_channels=1):
                super().__init__()
                self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

            def forward(self, x):
                return self.conv(x)

        with pytest.raises(ValueError, match="froze every parameter of AllConv"):
            tiny(module=AllConv, max_epochs=1).fit(*blobs)

    def test_criterion_chosen_by_outputs(self, blobs):
        seg = tiny(max_epochs=1).fit(*blobs)
        assert isinstance(seg.criterion_, PaddedBCEWithLogitsLoss)
        assert seg.module_.out_channels == 1
        seg2 = tiny(max_epochs=1, module__out_channels=2).fit(*blobs)
        assert isinstance(seg2.criterion_, PaddedCrossEntropyLoss)
        assert seg2.predict_proba(blobs[0][:1])[0].shape[0] == 2


class TestSklearn:
    def test_clone_and_params_round_trip(self, fitted):
        seg = fitted[0]
        params = seg.get_params(deep=False)
        twin = clone(seg)
        assert not hasattr(twin, "classes_")
        for key, value in twin.get_params(deep=False).items():
            if key not in ("callbacks", "train_split"):
                assert value == params[key] or value is params[key], key
        twin.set_params(patch_size=16, module__depth=3)
        assert twin.patch_size == 16 and twin.module__depth == 3

    def test_clone_refit_and_pickle_give_equal_predictions(self, fitted):
        seg, X, y = fitted
        np.testing.assert_array_equal(
            clone(seg).fit(X, y).predict_proba(X[0:1]), seg.predict_proba(X[0:1])
        )
        loaded = pickle.loads(pickle.dumps(seg))
        for a, b in zip(loaded.predict_proba(X), seg.predict_proba(X)):
            np.testing.assert_array_equal(a, b)

    def test_pipeline_with_normalizer(self, blobs):
        X, y = blobs
        X = [(x * 1000 + 50).astype(np.float32) for x in X]
        pipe = make_pipeline(ImageNormalizer(), tiny())
        pipe.fit(X, y)
        assert [p.shape for p in pipe.predict(X)] == [x.shape for x in X]
        assert 0 <= pipe.score(X, y) <= 1

    @pytest.mark.parametrize("n_jobs", [1, 2])
    def test_grid_search_on_variable_size_lists(self, blobs, n_jobs):
        X, y = blobs
        grid = GridSearchCV(
            tiny(train_split=None, max_epochs=2),
            {"lr": [1e-3, 1e-2]},
            cv=KFold(3),
            n_jobs=n_jobs,
        )
        grid.fit(X, y)
        assert set(grid.cv_results_["param_lr"]) == {1e-3, 1e-2}
        assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
        assert grid.best_estimator_.predict(X[:1])[0].shape == X[0].shape

    def test_parallel_grid_search_equals_serial(self, blobs):
        # identical scores need the same torch threads per fit: joblib gives each of
        # n_jobs workers cpu_count // n_jobs threads unless told otherwise
        from joblib import parallel_config

        X, y = blobs

        def scores(n_jobs):
            grid = GridSearchCV(
                tiny(train_split=None, max_epochs=2, random_state=3),
                {"lr": [1e-3, 1e-2]},
                cv=KFold(3),
                n_jobs=n_jobs,
            )
            res = grid.fit(X, y).cv_results_
            return np.array([res[f"split{i}_test_score"] for i in range(3)])

        serial = scores(1)
        with parallel_config(backend="loky", inner_max_num_threads=torch.get_num_threads()):
            np.testing.assert_array_equal(scores(2), serial)
        np.testing.assert_allclose(scores(2), serial, atol=1e-3)  # joblib's default threads

    def test_parallel_fits_use_separate_checkpoint_directories(self, blobs):
        from joblib import Parallel, delayed

        seen = []

        class Spy(SegmentationCheckpoint):
            def save_model(self, net):
                super().save_model(net)
                seen.append(self.dirname_)

        def fit(seed):
            return tiny(random_state=seed, callbacks__checkpoint=Spy()).fit(*blobs)

        Parallel(n_jobs=4, backend="threading")(delayed(fit)(s) for s in range(4))
        assert len(seen) >= 4 and len(set(seen)) == 4

    def test_sklearn_tags(self):
        tags = UNetSegmenter().__sklearn_tags__()
        assert tags.input_tags.three_d_array and not tags.input_tags.two_d_array
        assert tags.target_tags.required
        assert tags.non_deterministic and not tiny().__sklearn_tags__().non_deterministic


class TestErrors:
    def test_predict_before_fit(self):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            UNetSegmenter().predict([np.zeros((4, 4))])

    def test_channels_differ_from_fitted(self, fitted):
        with pytest.raises(ValueError, match=r"X\[0\] has 3 channel\(s\) but the model"):
            fitted[0].predict([np.zeros((8, 8, 3))])

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            (
                {"patch_size": 25},
                ValueError,
                "patch_size=25 gives 33-pixel .* use patch_size=24 or 28",
            ),
            ({"patch_size": 0}, ValueError, "patch_size must be an integer >= 1"),
            ({"padding": -1}, ValueError, "padding must be"),
            ({"target": "boundary"}, ValueError, "set n_classes=3"),
            ({"n_classes": 1}, ValueError, "n_classes must be an integer >= 2"),
            ({"augment": "yes"}, TypeError, "augment must be"),
            ({"module__in_channels": 3}, ValueError, "module__in_channels=3 but the images have 1"),
            ({"patchsize": 3}, ValueError, "did you mean patch_size"),
        ],
    )
    def test_bad_parameters(self, blobs, kwargs, error, match):
        with pytest.raises(error, match=match):
            tiny(**kwargs).fit(*blobs)

    def test_valid_unet_patch_size_hint(self, blobs):
        seg = tiny(module=UNet, module__padding="valid", patch_size=22)
        with pytest.raises(ValueError, match=r"62-pixel .* use patch_size=20 or 24"):
            seg.fit(*blobs)

    def test_single_image_needs_no_split(self):
        X, y = make_blobs(1)
        with pytest.raises(ValueError, match="train_split=None"):
            tiny().fit(X, y)
        tiny(train_split=None, max_epochs=1).fit(X, y)

    def test_mask_without_foreground_trains(self, blobs):
        X, y = blobs
        y = [np.zeros_like(m) for m in y]
        seg = tiny(max_epochs=1).fit(X, y)
        assert seg.score(X, y) == 1.0 or seg.score(X, y) == 0.0

    def test_predict_instances_needs_binary_or_boundary(self):
        X, y = make_blobs(3)
        y = [np.minimum(m, 2) for m in y]
        seg = tiny(n_classes=3, max_epochs=1).fit(X, y)
        with pytest.raises(ValueError, match=r"n_classes=3"):
            seg.predict_instances(X)

    @pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
    def test_image_dtypes(self, dtype):
        X, y = make_blobs(3)
        X = [(np.clip(x, 0, 1) * (255 if dtype == np.uint8 else 1000)).astype(dtype) for x in X]
        seg = tiny(max_epochs=1).fit(X, y)
        assert seg.predict(X[:1])[0].shape == X[0].shape


class TestPredictorCache:
    def test_kept_until_the_network_or_a_setting_changes(self, blobs):
        import pickle

        from conftest import tiny

        X, y = blobs
        seg = tiny(n_classes=3, target="boundary").fit(X, y)
        first = seg.predictor_
        assert seg.predictor_ is first  # no rebuild per call
        seg.set_params(tta=True)
        assert seg.predictor_ is not first and seg.predictor_.settings.tta
        tta = seg.predictor_
        seg.instance_params_ = {"threshold": 0.45, "split": 2.0}  # not on the grid
        assert seg.predictor_ is not tta and seg.predictor_.instance_threshold == 0.45
        calibrated = seg.predictor_
        seg.fit(X, y)  # a new network
        assert seg.predictor_ is not calibrated and seg.predictor_.module is seg.module_
        restored = pickle.loads(pickle.dumps(seg))
        assert "_predictor_cache_" not in restored.__dict__
        np.testing.assert_allclose(restored.predict_proba(X[:1])[0], seg.predict_proba(X[:1])[0])
