"""One evaluation path: each task reports what its benchmark reports, from one pass."""

import numpy as np
import pytest

from conftest import make_blobs, tiny
from skunet.evaluation import evaluate
from skunet.losses import WeightMapLoss
from skunet.metrics import (
    challenge_scores,
    dice_score,
    match_dataset,
    rand_scores,
    whole_dice_score,
)
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
    assert task_of(seg).name == "blood-cells" and metrics["images"] == 4
    expected = dice_score(three, pred, n_classes=3, average=None)
    assert metrics["dice_nucleus"] == pytest.approx(expected[2])
    assert metrics["dice_whole_cell"] == pytest.approx(whole_dice_score(three, pred))


def test_em_reports_rand_scores(blobs):
    X, y = blobs
    cells = [(m > 0).astype(np.uint8) for m in y]
    seg = tiny(criterion=WeightMapLoss, max_epochs=1).fit(X, cells)
    metrics = task_metrics(seg, X, cells)
    assert task_of(seg).name == "em"
    expected = rand_scores(cells, list(seg.predict(X)))
    assert metrics["v_rand"] == pytest.approx(expected.v_rand)
    assert metrics["pixel_error"] == pytest.approx(expected.pixel_error)
    assert "ap50" not in metrics
    protocol = challenge_scores(cells, [p[1] for p in seg.predict_proba(X)])
    assert metrics["v_rand_protocol"] == pytest.approx(protocol.v_rand)
    assert metrics["v_info_protocol"] == pytest.approx(protocol.v_info)
    assert metrics["v_rand_protocol"] >= metrics["v_rand"]  # 0.5 is one of its thresholds


def test_nuclei_instances_come_from_the_same_prediction(blobs):
    X, y = blobs
    seg = tiny(n_classes=3, target="boundary", max_epochs=1).fit(X, y)
    metrics = task_metrics(seg, X, y)
    expected = match_dataset(y, list(seg.predict_instances(X)), thresh=0.5)
    assert task_of(seg).name == "nuclei"
    assert metrics["ap50"] == pytest.approx(expected.accuracy)
    assert metrics["f1_50"] == pytest.approx(expected.f1)


def test_one_forward_pass_per_image_for_every_metric(blobs, monkeypatch):
    from skunet import predictor

    X, y = blobs
    seg = tiny(n_classes=3, target="boundary", max_epochs=1).fit(X, y)
    calls = []
    real = predictor.predict_compact
    monkeypatch.setattr(
        predictor,
        "predict_compact",
        lambda m, images, *a, **k: calls.append(len(images)) or real(m, images, *a, **k),
    )
    scores = evaluate(seg, X, y, ["iou", "dice", "ap50", "ap75", "f1_50", "v_rand"])
    assert calls == [1] * len(X)  # one image per pass, one pass per image
    assert list(scores) == ["iou", "dice", "ap50", "ap75", "f1_50", "v_rand"]
    assert scores["iou"] == pytest.approx(seg.score(X, y))


def test_reported_names_and_unknown_metrics(blobs):
    X, y = blobs
    seg = tiny(max_epochs=1).fit(X, y)
    assert list(evaluate(seg, X, y, {"foreground IoU": "iou"})) == ["foreground IoU"]
    with pytest.raises(ValueError, match="unknown metric 'iuo'"):
        evaluate(seg, X, y, ["iuo"])
    # instance labels in y: the generic task adds object metrics for a binary model
    metrics = task_metrics(seg, X, y)
    assert metrics["task"] == "generic" and {"ap50", "f1_50"} <= set(metrics)
    binary = [(m > 0).astype(np.uint8) for m in y]
    assert "ap50" not in task_metrics(seg, X, binary)
