"""The command line's task metrics: each task reports what its benchmark reports."""

import numpy as np
import pytest

from conftest import make_blobs, tiny
from skunet.losses import WeightMapLoss
from skunet.metrics import dice_score, match_dataset, rand_scores, whole_dice_score
from skunet.tasks import task_metrics, task_of


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(4)


def test_blood_cells_report_per_class_and_whole_cell_dice(blobs):
    X, y = blobs
    three = [np.minimum(m, 2).astype(np.uint8) for m in y]
    seg = tiny(n_classes=3, max_epochs=1).fit(X, three)
    metrics = task_metrics(seg, X, three)
    pred = list(seg.predict(X))
    assert task_of(seg) == "blood-cells" and metrics["images"] == 4
    expected = dice_score(three, pred, n_classes=3, average=None)
    assert metrics["dice_nucleus"] == pytest.approx(expected[2])
    assert metrics["dice_whole_cell"] == pytest.approx(whole_dice_score(three, pred))


def test_em_reports_rand_scores(blobs):
    X, y = blobs
    cells = [(m > 0).astype(np.uint8) for m in y]
    seg = tiny(criterion=WeightMapLoss, max_epochs=1).fit(X, cells)
    metrics = task_metrics(seg, X, cells)
    assert task_of(seg) == "em"
    expected = rand_scores(cells, list(seg.predict(X)))
    assert metrics["v_rand"] == pytest.approx(expected.v_rand)
    assert metrics["pixel_error"] == pytest.approx(expected.pixel_error)
    assert "ap50" not in metrics


def test_nuclei_instances_come_from_the_same_prediction(blobs):
    X, y = blobs
    seg = tiny(n_classes=3, target="boundary", max_epochs=1).fit(X, y)
    metrics = task_metrics(seg, X, y)
    expected = match_dataset(y, list(seg.predict_instances(X)), thresh=0.5)
    assert task_of(seg) == "nuclei"
    assert metrics["ap50"] == pytest.approx(expected.accuracy)
    assert metrics["f1_50"] == pytest.approx(expected.f1)
