import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error, contingency_table, variation_of_information
from sklearn.metrics import f1_score, jaccard_score

from conftest import membrane_cells
from skunet.instances import cell_instances
from skunet.metrics import (
    aji_score,
    challenge_scores,
    confusion_matrix,
    dice_score,
    iou_score,
    match_dataset,
    match_instances,
    per_image,
    rand_scores,
    whole_dice_score,
)

masks = arrays(
    np.int64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.integers(0, 2)
)


class TestPixelMetrics:
    @settings(max_examples=50, deadline=None)
    @given(data=st.data())
    def test_agree_with_sklearn(self, data):
        t = data.draw(masks)
        p = data.draw(arrays(np.int64, t.shape, elements=st.integers(0, 2)))
        per_iou = iou_score(t, p, n_classes=3, average=None)
        per_dice = dice_score(t, p, n_classes=3, average=None)
        ref_iou = jaccard_score(
            t.ravel(), p.ravel(), labels=[0, 1, 2], average=None, zero_division=0
        )
        ref_dice = f1_score(t.ravel(), p.ravel(), labels=[0, 1, 2], average=None, zero_division=0)
        absent = ~np.isin([0, 1, 2], np.concatenate([t.ravel(), p.ravel()]))
        np.testing.assert_array_equal(np.isnan(per_iou), absent)
        np.testing.assert_allclose(np.nan_to_num(per_iou), ref_iou)
        np.testing.assert_allclose(np.nan_to_num(per_dice), ref_dice)

    @given(a=masks)
    def test_symmetric_and_bounded(self, a):
        b = np.roll(a, 1, axis=0)
        s = iou_score(a, b, n_classes=3)
        assert s == pytest.approx(iou_score(b, a, n_classes=3))
        assert 0.0 <= s <= 1.0
        assert iou_score(a, a, n_classes=3) == 1.0

    def test_pooled_over_lists_of_sizes(self):
        t = [np.array([[1, 1]]), np.array([[0], [1], [1]])]
        p = [np.array([[1, 0]]), np.array([[1], [1], [1]])]
        # foreground: tp 3, fp 1, fn 1
        assert iou_score(t, p) == pytest.approx(3 / 5)
        assert dice_score(t, p) == pytest.approx(6 / 8)

    def test_empty_foreground_everywhere_is_perfect(self):
        assert iou_score(np.zeros((3, 3), int), np.zeros((3, 3), int)) == 1.0

    def test_ignored_pixels_and_torch(self):
        t = torch.tensor([[0, 1, -1]])
        p = torch.tensor([[0, 1, 1]])
        assert confusion_matrix(t, p, 2).tolist() == [[1, 0], [0, 1]]

    def test_shape_mismatch_named(self):
        with pytest.raises(ValueError, match=r"mask 1: y_true has shape \(2, 2\)"):
            iou_score(
                [np.zeros((1, 1), int), np.zeros((2, 2), int)],
                [np.zeros((1, 1), int), np.zeros((2, 3), int)],
            )


def random_labels(rng, shape=(64, 64), n=12):
    """Instance labels of random overlapping rectangles (later ones on top)."""
    lab = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        y0, x0 = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(3, 16, 2)
        lab[y0 : y0 + h, x0 : x0 + w] = i
    return lab


def perturb(rng, lab):
    """A plausible prediction: shifted, some objects dropped, some merged."""
    out = np.roll(lab, rng.integers(-2, 3, 2), axis=(0, 1))
    ids = np.unique(out)[1:]
    for i in rng.choice(ids, size=min(2, len(ids)), replace=False):
        out[out == i] = 0 if rng.random() < 0.5 else ids[0]
    return out


class TestObjectMatching:
    """Exactly StarDist's definitions (stardist.matching, test-only dependency)."""

    COUNTS = ("tp", "fp", "fn", "n_true", "n_pred")
    # StarDist computes IoUs in float32: scores agree to its precision, counts exactly
    SCORES = (
        "precision",
        "recall",
        "accuracy",
        "f1",
        "mean_true_score",
        "mean_matched_score",
        "panoptic_quality",
    )
    THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]

    def test_match_instances_equals_stardist(self):
        from stardist.matching import matching

        rng = np.random.default_rng(0)
        for _ in range(20):
            t = random_labels(rng)
            p = perturb(rng, t)
            ours = match_instances(t, p, thresh=self.THRESHOLDS)
            theirs = matching(t, p, thresh=self.THRESHOLDS)
            for a, b in zip(ours, theirs):
                assert [getattr(a, f) for f in self.COUNTS] == [getattr(b, f) for f in self.COUNTS]
                for f in self.SCORES:
                    assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-6, abs=1e-9), f

    def test_match_dataset_equals_stardist(self):
        from stardist.matching import matching_dataset

        rng = np.random.default_rng(1)
        ts = [random_labels(rng, n=int(rng.integers(0, 15))) for _ in range(8)]
        ps = [perturb(rng, t) if t.max() else t.copy() for t in ts]
        ps[3] = np.zeros_like(ps[3])  # an image with no predictions
        ours = match_dataset(ts, ps, thresh=self.THRESHOLDS)
        theirs = matching_dataset(ts, ps, thresh=self.THRESHOLDS, show_progress=False)
        for a, b in zip(ours, theirs):
            assert [getattr(a, f) for f in self.COUNTS] == [getattr(b, f) for f in self.COUNTS]
            for f in self.SCORES:
                assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-6, abs=1e-9), f

    def test_one_to_one_and_empty(self):
        t = np.array([[1, 1, 1, 1]])
        p = np.array([[1, 1, 2, 2]])  # two halves: IoU 0.5 each, only one may match
        m = match_instances(t, p, 0.5)
        assert (m.tp, m.fp, m.fn) == (1, 1, 0)
        empty = match_instances(np.zeros((3, 3), int), np.zeros((3, 3), int))
        assert (empty.tp, empty.accuracy, empty.panoptic_quality) == (0, 0.0, 0.0)

    def test_bad_labels(self):
        with pytest.raises(ValueError, match="y_true has shape"):
            match_instances(np.zeros((2, 2), int), np.zeros((2, 3), int))
        with pytest.raises(ValueError, match="non-negative integer labels"):
            match_instances(np.zeros((2, 2)), np.zeros((2, 2), int))


class TestPerImageAndWholeCell:
    def test_per_image_matches_single_image_calls(self):
        rng = np.random.default_rng(0)
        t = [rng.integers(0, 3, (5, 6)) for _ in range(3)]
        p = [rng.integers(0, 3, (5, 6)) for _ in range(3)]
        values = per_image(dice_score, t, p, n_classes=3, average=None)
        assert values.shape == (3, 3)
        for i in range(3):
            np.testing.assert_allclose(values[i], dice_score(t[i], p[i], n_classes=3, average=None))
        assert per_image(iou_score, t, p).shape == (3,)

    def test_per_image_length_mismatch(self):
        with pytest.raises(ValueError, match="3 true masks but 2"):
            per_image(iou_score, [np.zeros((1, 1), int)] * 3, [np.zeros((1, 1), int)] * 2)

    def test_whole_dice_is_binary_dice_of_the_merged_foreground(self):
        rng = np.random.default_rng(1)
        t = [rng.integers(0, 3, (7, 9)) for _ in range(2)]
        p = [rng.integers(0, 3, (7, 9)) for _ in range(2)]
        expected = f1_score(
            np.concatenate([m.ravel() for m in t]) > 0, np.concatenate([m.ravel() for m in p]) > 0
        )
        assert whole_dice_score(t, p) == pytest.approx(expected)
        # cytoplasm predicted as nucleus is still part of the cell
        assert whole_dice_score(np.array([[0, 1, 2]]), np.array([[0, 2, 1]])) == 1.0
        assert whole_dice_score(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0


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


class TestChallengeScores:
    """The ISBI 2012 protocol on cases worked out by hand."""

    @staticmethod
    def two_cells():
        truth = np.ones((7, 9), np.uint8)
        truth[:, 4] = 0  # a one-pixel membrane between two cells of 28 px
        return truth

    def test_a_one_pixel_gap_merges_two_cells_until_the_threshold_closes_it(self):
        truth = self.two_cells()
        p = np.where(truth > 0, 0.95, 0.2)
        p[3, 4] = 0.6  # a faint spot in the membrane
        s = challenge_scores(truth, p)
        # thresholds 0.2-0.5 keep the gap (one cell: sum p_ij^2 = 0.5, sum t^2 = 0.5,
        # sum q^2 = 1, V_rand = 2/3); from 0.6 on the membrane is whole
        assert (s.v_rand, s.v_rand_threshold) == (1.0, 0.6)
        merged = rand_scores(truth, (p > 0.5).astype(np.uint8))
        assert merged.v_rand == pytest.approx(2 / 3) and merged.v_rand_split == 1.0
        assert s.v_info == 1.0 and s.v_info_threshold == 0.6

    def test_a_thick_membrane_costs_nothing(self):
        truth = self.two_cells()
        p = np.where(truth > 0, 0.9, 0.1)
        p[:, 3:6] = 0.1  # three pixels wide
        assert challenge_scores(truth, p).v_rand == 1.0

    def test_a_spurious_membrane_splits_a_cell_below_its_threshold_only(self):
        truth = np.ones((6, 8), np.uint8)  # one cell
        p = np.full((6, 8), 0.9)
        p[:, 3] = 0.3  # a membrane that is not there
        split = rand_scores(truth, (p > 0.5).astype(np.uint8))
        assert split.v_rand_merge == 1.0 and split.v_rand_split < 0.55
        s = challenge_scores(truth, p)
        assert (s.v_rand, s.v_rand_threshold) == (1.0, 0.0)  # p > 0 keeps one cell

    def test_slices_are_averaged_and_labels_are_one_threshold(self):
        truth = self.two_cells()
        good = np.where(truth > 0, 0.9, 0.1)
        gap = good.copy()
        gap[:, 4] = 0.9  # no membrane at all: merged at every threshold below 0.9
        s = challenge_scores([truth, truth], [good, gap])
        assert s.v_rand == pytest.approx((1 + 2 / 3) / 2)
        labels = challenge_scores(truth, truth)
        assert labels.v_rand == 1.0 and np.isnan(labels.v_rand_threshold)


def test_seg_scores_each_true_object_by_the_one_covering_most_of_it():
    from skunet.metrics import seg_score

    truth = np.zeros((10, 10), int)
    truth[:5, :5], truth[5:, 5:] = 1, 2
    assert seg_score(truth, truth * 7) == 1.0  # ids need not agree
    assert seg_score(truth, np.zeros_like(truth)) == 0.0
    half = truth.copy()
    half[5:, 5:8] = 0  # object 2: 10 of 25 pixels covered: not more than half
    assert seg_score(truth, half) == 0.5
    merged = (truth > 0).astype(int)  # one object covering both: IoU 25 / 50 each
    assert seg_score([truth, truth], [merged, truth]) == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    with pytest.raises(ValueError, match="image 0: y_true has shape"):
        seg_score([truth], [truth[:5]])


def test_annotated_only_drops_objects_mostly_outside_the_annotation():
    from skunet.metrics import annotated_only

    truth = np.array([[1, 1, -1, -1, -1]])
    pred = np.array([[1, 1, 1, 2, 2]])  # object 1: a third outside; object 2: all
    t, p = annotated_only(truth, pred)
    assert t.tolist() == [[1, 1, 0, 0, 0]] and p.tolist() == [[1, 1, 1, 0, 0]]
    same = np.array([[1, 0]])
    assert annotated_only(same, same)[1] is same


def _aji_by_loops(true: np.ndarray, pred: np.ndarray) -> float:
    """Kumar et al.'s algorithm as written: for each true object the predicted one of
    highest IoU, then every predicted object never chosen added to the union."""
    inter = union = 0
    chosen = set()
    for t in np.unique(true[true > 0]):
        g = true == t
        best, best_iou = None, 0.0
        for p in np.unique(pred[pred > 0]):
            s = pred == p
            iou = (g & s).sum() / (g | s).sum()
            if iou > best_iou:
                best, best_iou = p, iou
        if best is None:
            union += g.sum()
            continue
        s = pred == best
        inter, union = inter + (g & s).sum(), union + (g | s).sum()
        chosen.add(best)
    union += sum((pred == p).sum() for p in np.unique(pred[pred > 0]) if p not in chosen)
    return inter / union


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.int32, (12, 12), elements=st.integers(0, 4)),
    arrays(np.int32, (12, 12), elements=st.integers(0, 5)),
)
def test_aji_follows_kumar_et_al(true, pred):
    if not true.any():
        return
    assert aji_score(true, pred) == pytest.approx(_aji_by_loops(true, pred))


def test_aji_is_one_for_the_truth_and_falls_with_each_kind_of_error():
    true = np.zeros((20, 20), np.int32)
    true[2:8, 2:8], true[10:16, 10:16] = 1, 2
    assert aji_score(true, true + (true > 0) * 5) == 1.0  # labels need not agree
    missed = np.where(true == 2, 0, true)
    spurious = true.copy()
    spurious[17:20, 0:3] = 3
    assert aji_score(true, missed) == pytest.approx(36 / 72)
    assert aji_score(true, spurious) == pytest.approx(72 / 81)
    assert aji_score(true, np.zeros_like(true)) == 0.0
    # several images: the mean of their AJIs, as MoNuSeg ranks
    assert aji_score([true, true], [true, missed]) == pytest.approx((1 + 0.5) / 2)
    with pytest.raises(ValueError, match="image 1"):
        aji_score([true, true], [true, true[:5]])
