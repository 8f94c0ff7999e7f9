"""Instance thresholds chosen on labelled images (skunet.calibration, the estimator's
calibrate_instances and the calibration callback)."""

import numpy as np
import pytest

from conftest import disks, make_blobs, membrane_cells, tiny
from skunet import UNetSegmenter
from skunet.calibration import calibrate_instances, mean_ap
from skunet.models import UNet
from skunet.prediction.inference import InferenceSettings
from skunet.predictor import Predictor
from skunet.tiling import Geometry


class FixedPredictor(Predictor):
    """A predictor whose 'network' answers with given compact probabilities."""

    def __init__(self, probabilities, **kwargs):
        net = UNet(in_channels=1, out_channels=3, depth=2, base_channels=4)
        super().__init__(net, Geometry(net, padding=4), InferenceSettings(), 1, **kwargs)
        self.fixed = probabilities

    def probabilities(self, images, finalize=None):
        return [np.asarray(p, np.float32) for p in self.fixed]


def three_class(labels, interior=None, boundary=None):
    """Compact 3-class probabilities (background, interior, boundary) of instance labels:
    interior probability ``interior[k]`` for object k (default 0.95), no boundary
    predicted unless ``boundary`` gives a map."""
    fg = np.zeros(labels.shape, np.float32)
    for k in range(1, labels.max() + 1):
        fg[labels == k] = (interior or {}).get(k, 0.95)
    bd = np.zeros_like(fg) if boundary is None else boundary.astype(np.float32)
    return np.stack([1 - fg - bd, fg, bd]).clip(0, 1)


def test_two_overlapping_disks_come_back_as_two_objects():
    truth = disks((48, 64), [(24, 22), (24, 40)], radius=11)  # overlapping, no boundary
    p = FixedPredictor([three_class(truth)], n_classes=3, target="boundary")
    assert p.instances(p.fixed[0], split=None).max() == 1  # one seed: merged
    result = calibrate_instances(p, [None], [truth])
    objects = p.instances(p.fixed[0], result.threshold, result.split)
    assert objects.max() == 2
    assert mean_ap([truth], [objects]) == pytest.approx(result.score)
    assert result.score >= 0.9


def test_a_faint_nucleus_lowers_the_chosen_threshold():
    truth = disks((40, 80), [(20, 15), (20, 60)], radius=8)
    probs = three_class(truth, interior={2: 0.45})  # the second nucleus is faint
    p = FixedPredictor([probs], n_classes=3, target="boundary")
    result = calibrate_instances(p, [None], [truth])
    assert p.instances(probs).max() == 1  # the defaults miss it
    assert result.threshold < 0.45 and result.score > result.default_score
    assert result.default_score == pytest.approx(mean_ap([truth], [p.instances(probs)]))
    # the model then uses the chosen pair when not told otherwise
    calibrated = FixedPredictor(
        [probs],
        n_classes=3,
        target="boundary",
        instance_threshold=result.threshold,
        instance_split=result.split,
    )
    assert calibrated.instances(probs).max() == 2


@pytest.mark.parametrize("seed", range(4))
def test_calibration_never_lowers_the_score_of_the_defaults(seed):
    rng = np.random.default_rng(seed)
    truths, probs = [], []
    for _ in range(3):
        truth = disks((40, 40), rng.integers(6, 34, size=(4, 2)), radius=5)
        noisy = three_class(truth) + rng.normal(0, 0.25, (3, 40, 40)).astype(np.float32)
        noisy = noisy.clip(0, None)
        truths.append(truth)
        probs.append(noisy / noisy.sum(0, keepdims=True))
    p = FixedPredictor(probs, n_classes=3, target="boundary")
    result = calibrate_instances(p, [None] * 3, truths)
    assert result.score >= result.default_score
    assert result.scores[(0.5, "auto")] == result.default_score
    assert max(result.scores.values()) == result.score


def test_defaults_are_kept_when_nothing_scores_higher():
    truth = disks((40, 40), [(12, 12), (28, 28)], radius=5)
    p = FixedPredictor([three_class(truth)], n_classes=3, target="boundary")
    result = calibrate_instances(p, [None], [truth])
    assert result.default_score == 1.0
    assert result.params == {"threshold": 0.5, "split": "auto"}


def test_binary_models_choose_a_threshold_only():
    truth = disks((40, 40), [(12, 12), (28, 28)], radius=5)
    fg = np.where(truth == 1, 0.9, np.where(truth == 2, 0.35, 0.0))[None].astype(np.float32)
    p = FixedPredictor([fg], n_classes=2)
    result = calibrate_instances(p, [None], [truth])
    assert {s for _, s in result.scores} <= {None, "auto"}
    assert result.threshold < 0.35 and result.score == 1.0


def test_membrane_models_choose_threshold_and_split_by_v_rand():
    """Two cells joined where the membrane is faint (0.6): threshold 0.5 merges them,
    0.7 keeps them apart; a thin cell beside them must not be lost by any choice."""
    truth = np.ones((40, 80), np.uint8)
    truth[:, 35] = truth[:, 39] = 0
    cell = np.where(truth == 1, 0.95, 0.05)
    cell[10:30, 35] = 0.6
    p = FixedPredictor([cell[None]], n_classes=2, membranes=True)
    result = calibrate_instances(p, [None], [truth])
    assert result.metric == "v_rand"
    assert result.default_score < 0.97 and result.score == 1.0  # merged: 2 cells of 3
    assert p.instances(cell[None], result.threshold, result.split).max() == 3
    assert set(split for _, split in result.scores) >= {None, 0.85}
    assert {t for t, _ in result.scores} >= {0.8, 0.9}  # the membranes' own thresholds


def test_membrane_models_lean_to_the_highest_seed_threshold_near_the_best():
    """A clean prediction scores V_rand 1 with every pair but the lowest thresholds;
    of those the highest threshold wins (seeds above any gap), not the defaults."""
    from skunet.calibration import SEED_TOLERANCE

    truth = np.ones((40, 80), np.uint8)
    truth[:, 35] = truth[:, 39] = 0
    cell = np.where(truth == 1, 0.95, 0.05)
    p = FixedPredictor([cell[None]], n_classes=2, membranes=True)
    result = calibrate_instances(p, [None], [truth])
    assert result.score == result.default_score == 1.0
    assert result.threshold == max(t for t, _ in result.scores) == 0.9
    assert result.score >= max(result.scores.values()) - SEED_TOLERANCE
    # only the membrane decoder leans: a binary model on the same map keeps the defaults
    binary = FixedPredictor([cell[None]], n_classes=2)
    assert calibrate_instances(binary, [None], [truth]).threshold == 0.5


def test_a_calibrated_model_calibrates_again_from_the_uncalibrated_defaults():
    """The defaults candidate (0.5, "auto") is the decoder's own split (0.85), as it is
    decoded once chosen, even when an earlier calibration gave the predictor another."""
    truth = np.ones((40, 80), np.uint8)
    truth[:, 35] = truth[:, 39] = 0
    cell = np.where(truth == 1, 0.95, 0.05)
    # a border of mean membrane probability 0.905, strength 0.90 against the cells'
    # insides (0.05): 0.85 keeps it, 0.93 merges it (and keeps the intact membrane, 0.947)
    cell[:4, 35] = 0.5
    calibrated = FixedPredictor([cell[None]], n_classes=2, membranes=True, instance_split=0.93)
    assert calibrated.instances(cell[None]).max() == 2  # its own split merges two cells
    result = calibrate_instances(calibrated, [None], [truth], thresholds=[0.5])
    assert result.default_score == result.scores[(0.5, 0.85)] == 1.0
    assert result.params == {"threshold": 0.5, "split": "auto"}
    chosen = FixedPredictor([cell[None]], n_classes=2, membranes=True, instance_split=result.split)
    assert chosen.instances(cell[None]).max() == 3


def test_objects_where_nothing_is_annotated_are_not_scored():
    """A partial truth (-1 where nobody annotated): a predicted object there neither
    costs nor counts."""
    truth = disks((40, 40), [(10, 10), (10, 30)], radius=5)
    predicted = disks((40, 40), [(10, 10), (10, 30), (30, 20)], radius=5)
    partial = np.where(np.arange(40)[:, None] < 22, truth, -1)
    calibration = calibrate_instances(
        FixedPredictor([three_class(predicted)]), [np.zeros((40, 40))], [partial], [0.5], [None]
    )
    assert calibration.score == pytest.approx(mean_ap([truth[:22]], [predicted[:22]]))
    assert calibration.score > mean_ap([truth], [predicted])


def test_mismatched_labels_are_refused():
    p = FixedPredictor([np.zeros((3, 8, 8))], n_classes=3, target="boundary")
    with pytest.raises(ValueError, match="2 label images"):
        calibrate_instances(p, [None], [np.zeros((8, 8), int)] * 2)


def test_distance_models_calibrate_their_seed_level():
    from skunet.targets import TARGETS, distance_classes

    truth = disks((40, 64), [(20, 22), (20, 40)], radius=11)  # overlapping pair
    # the network saw the seam only faintly: its upper levels join the two centres
    classes = np.where(truth > 0, np.maximum(distance_classes(truth, 4), 3), 0)
    probs = (classes[None] == np.arange(5)[:, None, None]).astype(np.float32)
    p = FixedPredictor([probs], n_classes=5, target="distance")
    assert p.instances(probs).max() == 1  # the default level merges them
    result = calibrate_instances(p, [None], [truth])
    assert {s for _, s in result.scores} == {"auto", *TARGETS["distance"].splits}
    assert result.split > 0.5 and result.score > result.default_score
    assert p.instances(probs, result.threshold, result.split).max() == 2


class TestEstimator:
    def test_fit_calibrates_on_the_validation_images_and_the_file_keeps_it(self, tmp_path):
        X, y = make_blobs(10)
        seg = tiny(n_classes=3, target="boundary", max_epochs=3).fit(X, y)
        chosen = seg.instance_params_
        assert chosen == seg.calibration_.params
        assert seg.calibration_.score >= seg.calibration_.default_score
        own = seg.predict_instances(X[:3])
        assert np.array_equal(own, seg.predict_instances(X[:3], **chosen))
        path = seg.save(tmp_path / "m.skunet")
        loaded = UNetSegmenter.load(path)
        assert loaded.instance_params_ == chosen
        assert np.array_equal(loaded.predict_instances(X[:3]), own)

    def test_calibration_callback_can_be_removed(self):
        X, y = make_blobs(6)
        seg = tiny(n_classes=3, target="boundary", callbacks__calibration=None).fit(X, y)
        assert not hasattr(seg, "instance_params_")

    def test_no_validation_images_no_calibration(self):
        X, y = make_blobs(4)
        seg = tiny(n_classes=3, target="boundary", train_split=None).fit(X, y)
        assert not hasattr(seg, "instance_params_")

    def test_a_new_fit_forgets_the_last_calibration_and_warm_start_keeps_it(self):
        X, y = make_blobs(6)
        seg = tiny(n_classes=3, target="boundary", train_split=None).fit(X[:4], y[:4])
        seg.calibrate_instances(X[4:], y[4:], thresholds=[0.4], splits=[1.0])
        chosen = seg.instance_params_
        seg.set_params(warm_start=True).fit(X[:4], y[:4])  # fine-tuning keeps them
        assert seg.instance_params_ == chosen
        seg.set_params(warm_start=False).fit(X[:4], y[:4])  # a new network
        assert not hasattr(seg, "instance_params_") and not hasattr(seg, "calibration_")
        assert seg.predictor_.instance_settings()["threshold"] == 0.5

    def test_calibrate_instances_on_a_users_images(self):
        X, y = make_blobs(8)
        seg = tiny(n_classes=3, target="boundary", train_split=None).fit(X[:6], y[:6])
        result = seg.calibrate_instances(X[6:], y[6:], thresholds=[0.4, 0.6], splits=[None, 1.0])
        assert set(result.scores) == {
            (0.5, "auto"),
            (0.4, None),
            (0.4, 1.0),
            (0.6, None),
            (0.6, 1.0),
        }
        assert seg.instance_params_ == result.params
        with pytest.raises(ValueError, match="masks"):
            seg.calibrate_instances(X[6:], y[7:])

    def test_membrane_models_calibrate_on_their_validation_slices(self):
        X = [membrane_cells(seed=s).astype(np.float32) for s in range(5)]
        y = [x > 0 for x in X]
        seg = tiny(task="em", max_epochs=1).fit(X, y)  # 1 of 5 slices validates
        assert seg.calibration_.metric == "v_rand"
        assert seg.instance_params_ == seg.calibration_.params
        result = seg.calibrate_instances(X, [x.astype(int) for x in X])
        assert result.metric == "v_rand" and result.score >= result.default_score


def test_ap_monitor_reads_the_instance_labels_of_the_validation_images():
    from skorch.dataset import ValidSplit

    from skunet.callbacks import MetricScoring
    from skunet.evaluation import evaluate
    from skunet.intake.sampling import ImageSet

    X, y = make_blobs(10)
    seg = tiny(
        n_classes=3,
        target="boundary",
        max_epochs=2,
        callbacks=[("ap", MetricScoring("ap50"))],
        callbacks__calibration=None,  # the monitor scores the defaults
    ).fit(X, y)
    _, valid = ValidSplit(0.2, random_state=0)(ImageSet(X))
    index = list(valid.indices)
    expected = evaluate(seg, [X[i] for i in index], [y[i] for i in index], ["ap50"])["ap50"]
    assert seg.history[-1, "valid_ap50"] == pytest.approx(expected)
