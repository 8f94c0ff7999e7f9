"""The EM task: weight map, augmentation, weighted loss, LR range test, Rand scores,
ISBI loader and the em preset."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error, contingency_table, variation_of_information
from skimage.segmentation import find_boundaries

from conftest import disks, make_blobs, tiny
from skunet.augment import Augment, elastic_deform
from skunet.dataset import ImageSet, PatchDataset
from skunet.datasets import load_isbi2012
from skunet.losses import WeightMapLoss, padded_bce_with_logits, weighted_padded_loss
from skunet.metrics import rand_scores
from skunet.models import UNet
from skunet.presets import em_segmenter
from skunet.targets import cell_instances, class_balance_weights, unet_weight_map
from skunet.tiling import IGNORE, Geometry


def membrane_cells(shape=(64, 64), step=16, seed=0):
    """A binary EM-like label: 1 = cells on a jittered grid, 0 = 1-3 px membranes."""
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, np.uint8)
    for r in range(step, shape[0], step):
        mask[r : r + rng.integers(1, 4), :] = 0
    for c in range(step, shape[1], step):
        mask[:, c : c + rng.integers(1, 4)] = 0
    return mask


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

    @pytest.mark.parametrize("bad", [{"elastic": -1}, {"scale": 1.5}, {"elastic_grid": 1}])
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


class TestRandScores:
    def test_perfect_and_pixel_error(self):
        truth = membrane_cells()
        s = rand_scores(truth, truth)
        assert s.v_rand == s.v_info == 1.0 and s.pixel_error == 0.0
        pred = truth.copy()
        pred[0, 0] = 1 - pred[0, 0]
        assert rand_scores(truth, pred).pixel_error == 1 / truth.size

    def test_merge_and_split_are_told_apart(self):
        truth = membrane_cells()
        merged = truth.copy()
        merged[16:19, :] = 1  # remove one horizontal membrane: cells merge
        split = truth.copy()
        split[8, :] = 0  # a new membrane through a row of cells: cells split
        m, s = rand_scores(truth, merged), rand_scores(truth, split)
        assert m.v_rand_split == 1.0 and m.v_rand_merge < 1.0 and m.v_info_split == 1.0
        assert s.v_rand_merge < 1.0 or s.v_rand_split < 1.0
        assert s.v_rand_split < 1.0 and s.v_info_merge <= 1.0

    def test_cross_checks_scikit_image(self):
        rng = np.random.default_rng(1)
        truth = cell_instances(membrane_cells((128, 128), step=12))
        pred = cell_instances(membrane_cells((128, 128), step=14, seed=1))
        pred[rng.random(pred.shape) < 0.02] = 0
        ours = rand_scores(truth, pred, thin=False)
        # scikit-image counts pixel pairs (n^2 - n); the challenge counts n^2: with the
        # same contingency table both give the same scores
        table = contingency_table(truth, pred, ignore_labels=[0]).toarray()
        n = table.sum()
        p, a, b = table / n, table.sum(1) / n, table.sum(0) / n
        assert ours.v_rand == pytest.approx(2 * (p**2).sum() / ((a**2).sum() + (b**2).sum()))
        assert ours.v_rand_split == pytest.approx((p**2).sum() / (a**2).sum())
        error, precision, recall = adapted_rand_error(truth, pred, ignore_labels=[0])
        pairs = lambda c: (c**2).sum() - n  # noqa: E731  (scikit-image's pair counts)
        assert precision == pytest.approx(pairs(table) / pairs(table.sum(1)))
        assert recall == pytest.approx(pairs(table) / pairs(table.sum(0)))
        assert ours.v_rand == pytest.approx(1 - error, abs=0.01)
        # variation of information: [H(pred | truth), H(truth | pred)] in bits
        h_pred_given_true, h_true_given_pred = variation_of_information(
            truth, pred, ignore_labels=[0]
        )
        entropy = lambda q: -(q[q > 0] * np.log2(q[q > 0])).sum()  # noqa: E731
        mutual = entropy(a) - h_true_given_pred
        assert entropy(b) - h_pred_given_true == pytest.approx(mutual)
        assert ours.v_info == pytest.approx(2 * mutual / (entropy(a) + entropy(b)))

    def test_thinning_forgives_thick_membranes_not_gaps(self):
        truth = membrane_cells()
        thick = ndi.binary_erosion(truth, iterations=2).astype(np.uint8)
        assert rand_scores(truth, thick).v_rand == 1.0
        assert rand_scores(truth, thick, thin=False).v_rand < 0.9
        gap = thick.copy()
        gap[:, 14:22] = 1  # a hole through a vertical membrane
        assert rand_scores(truth, gap).v_rand_merge < 1.0

    def test_lists_average_over_slices(self):
        truth = membrane_cells()
        merged = truth.copy()
        merged[16:19, :] = 1
        both = rand_scores([truth, truth], [truth, merged])
        assert both.v_rand == pytest.approx((1 + rand_scores(truth, merged).v_rand) / 2)

    def test_bad_input_names_the_mask(self):
        with pytest.raises(ValueError, match="mask 1"):
            rand_scores([np.ones((4, 4), int)] * 2, [np.ones((4, 4), int), np.ones((4, 5), int)])
        with pytest.raises(ValueError, match="y_pred"):
            rand_scores(np.ones((4, 4), int), np.full((4, 4), 0.5))


class TestLoadISBI:
    def write_pngs(self, root, n=3, bad=None):
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        for i in range(n):
            Image.fromarray(np.full((16, 12), i * 10, np.uint8)).save(root / f"images/{i:02}.png")
            label = membrane_cells((16, 12), step=5) * 255
            if i == bad:
                label[0, 0] = 128
            Image.fromarray(label.astype(np.uint8)).save(root / f"labels/{i:02}.png")

    def test_png_folders(self, tmp_path):
        self.write_pngs(tmp_path)
        X, y = load_isbi2012(tmp_path)
        assert len(X) == 3 and X[1][0, 0] == 10
        assert y[0].dtype == np.uint8 and set(np.unique(y[0])) == {0, 1}
        np.testing.assert_array_equal(y[0], membrane_cells((16, 12), step=5))

    def test_tif_stacks(self, tmp_path):
        volume = np.stack([np.full((16, 12), i, np.uint8) for i in range(4)])
        labels = np.stack([membrane_cells((16, 12), step=5) * 255] * 4).astype(np.uint8)
        tifffile.imwrite(tmp_path / "train-volume.tif", volume, photometric="minisblack")
        tifffile.imwrite(tmp_path / "train-labels.tif", labels, photometric="minisblack")
        X, y = load_isbi2012(tmp_path)
        assert len(X) == 4 and X[3][0, 0] == 3 and y[2].max() == 1

    def test_errors_name_the_file(self, tmp_path):
        with pytest.raises(ValueError, match="neither images/"):
            load_isbi2012(tmp_path)
        self.write_pngs(tmp_path, bad=1)
        with pytest.raises(ValueError, match=r"01\.png.*128"):
            load_isbi2012(tmp_path)


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


@pytest.mark.skipif(
    not (__import__("pathlib").Path(__file__).parents[2] / "shared/data/isbi2012").is_dir(),
    reason="shared ISBI 2012 data not present",
)
def test_shared_isbi_data():
    X, y = load_isbi2012(__import__("pathlib").Path(__file__).parents[2] / "shared/data/isbi2012")
    assert len(X) == 30 and X[0].shape == (512, 512)
    assert 0.7 < np.mean([m.mean() for m in y]) < 0.85  # about 78 % cell interior
    assert all(cell_instances(m).max() > 50 for m in y[:3])
