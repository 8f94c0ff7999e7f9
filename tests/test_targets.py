import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import disks
from skunet.instances import Regions
from skunet.targets import boundary_classes, distance_classes, mask_classes


def test_touching_objects_are_separated_by_boundary():
    labels = np.zeros((5, 8), int)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:7] = 2
    classes = boundary_classes(labels)
    assert classes[2, 2] == 1 and classes[2, 5] == 1
    assert classes[2, 3] == 2 and classes[2, 4] == 2
    assert (classes[labels == 0] == 0).all()


def test_boundary_classes_of_disks_ring():
    classes = boundary_classes(disks((21, 21), [(10, 10)], 6))
    assert set(np.unique(classes)) == {0, 1, 2}
    assert classes[10, 10] == 1 and classes[10, 4] == 2


def test_mask_classes():
    assert mask_classes(np.array([[0, 2, 5]]), 2).tolist() == [[0, 1, 1]]
    assert mask_classes(np.array([[0, 2, 1]]), 3).tolist() == [[0, 2, 1]]


class TestDistanceClasses:
    def test_levels_rise_to_each_objects_centre_and_fall_where_objects_touch(self):
        labels = disks((40, 60), [(20, 20), (20, 37)], radius=9)  # overlapping pair
        classes = distance_classes(labels, levels=4)
        assert set(np.unique(classes)) == {0, 1, 2, 3, 4}
        assert (classes[labels == 0] == 0).all() and (classes[labels > 0] >= 1).all()
        assert classes[20, 20] == 4 and classes[20, 37] == 4
        seam = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
        assert (classes[:, 1:][seam] == 1).all()
        # the top levels are one seed per object
        from skimage.measure import label

        assert label(classes >= 3).max() == 2

    def test_small_and_large_objects_both_reach_the_top_level(self):
        labels = disks((60, 60), [(15, 15), (40, 40)], radius=3)
        labels[disks((60, 60), [(40, 40)], radius=15) > 0] = 2
        classes = distance_classes(labels, levels=4)
        for k in (1, 2):
            assert classes[labels == k].max() == 4

    def test_matches_brute_force_for_one_object(self):
        labels = disks((30, 30), [(15, 15)], radius=8)
        d = ndi.distance_transform_edt(labels > 0)
        expected = np.ceil(3 * d / d.max()).astype(np.uint8)
        assert np.array_equal(distance_classes(labels, 3), expected)

    def test_an_object_cut_by_the_image_edge_goes_on_outside(self):
        labels = np.zeros((10, 10), int)
        labels[:, :5] = 1
        classes = distance_classes(labels, 4)
        assert (classes[:, 0] == 4).all() and (classes[:, 4] == 1).all()

    def test_mask_classes_and_bad_levels(self):
        labels = disks((20, 20), [(10, 10)], radius=6)
        assert np.array_equal(mask_classes(labels, 5, "distance"), distance_classes(labels, 4))
        for bad in (1, 2.5, True):
            with pytest.raises(ValueError, match="levels"):
                distance_classes(labels, bad)


class TestTargetRegistry:
    """A new target is one record: validation, training, prediction, instances and the
    calibration all read it."""

    def test_a_toy_target_fits_predicts_and_calibrates(self, monkeypatch):
        from conftest import make_blobs, tiny
        from skunet.instances import label_components
        from skunet.targets import TARGETS, Target

        def cores(mask, n_classes):  # 0 background, 1 rim, 2 core of each object
            classes = (mask > 0).astype(np.uint8)
            classes[distance_classes(mask, 2) == 2] = 2
            return classes

        core = Target(
            name="core",
            encode=cores,
            decode=lambda p, threshold, split: label_components(p[2], threshold),
            decoder="label_components",
            regions=Regions(lambda p, threshold: p[2] > threshold, connectivity=2, whole=True),
            instance_labels=True,
            split=None,
            splits=(None,),
            n_classes=3,
            classes="background, rim, core",
        )
        monkeypatch.setitem(TARGETS, "core", core)
        X, y = make_blobs(6)
        seg = tiny(target="core", n_classes=3, max_epochs=8, train_split=None).fit(X, y)
        assert seg.predict(X[:1]).max() <= 2
        labels = seg.predict_instances(X[:2])
        assert labels.shape == (2, 48, 48) and labels.max() >= 1
        result = seg.calibrate_instances(X[:2], y[:2], thresholds=(0.3, 0.5))
        assert {t for t, _ in result.scores} == {0.3, 0.5}
        assert seg.predictor_.instance_settings()["decoder"] == "label_components"
        with pytest.raises(ValueError, match=r"derives 3 classes \(background, rim, core\)"):
            tiny(target="core", n_classes=4).fit(X, y)
        with pytest.raises(TypeError, match="instance labels"):
            tiny(target="core", n_classes=3).fit(X, [m > 0 for m in y])

    def test_membrane_models_decode_with_their_own_record(self):
        from skunet.targets import MEMBRANES, TARGETS, decoding

        assert decoding("mask", membranes=True) is MEMBRANES
        assert decoding("mask") is TARGETS["mask"] and decoding("boundary").split == 0.5
