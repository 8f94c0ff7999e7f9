import numpy as np
import pytest
from skimage.measure import label
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline

import skunet
from conftest import make_blobs, tiny
from skunet.metrics import dice_score, iou_score, match_dataset, whole_dice_score
from skunet.preprocessing import ImageNormalizer
from skunet.scorers import SCORERS, ap50, dice_class_2, get_scorer, iou


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    return (
        tiny(max_epochs=25, lr=0.01, patches_per_image=4, module__base_channels=8).fit(X, y),
        X,
        y,
    )


def test_scorers_by_object_and_by_name():
    assert get_scorer("ap50") is ap50 is SCORERS["ap50"] is skunet.get_scorer("ap50")
    assert repr(iou) == "SegmentationScorer('iou')"
    with pytest.raises(ValueError, match="unknown scorer 'ap5'"):
        get_scorer("ap5")
    assert "pixel_error" not in SCORERS  # an error, not a score


def test_values_match_the_metrics(fitted):
    seg, X, y = fitted
    pred = list(seg.predict(X))
    truth = [(m > 0).astype(int) for m in y]
    assert SCORERS["iou"](seg, X, y) == pytest.approx(iou_score(truth, pred))
    assert SCORERS["iou"](seg, X, y) == pytest.approx(seg.score(X, y))
    assert SCORERS["dice"](seg, X, y) == pytest.approx(dice_score(truth, pred))
    m = match_dataset(list(y), list(seg.predict_instances(X)))
    assert SCORERS["ap50"](seg, X, y) == pytest.approx(m.accuracy)
    assert SCORERS["f1_50"](seg, X, y) == pytest.approx(m.f1)
    assert SCORERS["ap50"](seg, X, y) > 0.3  # a trained model finds blobs


def test_binary_masks_become_components(fitted):
    seg, X, y = fitted
    binary = [(m > 0).astype(np.uint8) for m in y]
    components = [label(b) for b in binary]
    expected = match_dataset(components, list(seg.predict_instances(X))).accuracy
    assert SCORERS["ap50"](seg, X, binary) == pytest.approx(expected)


def test_grid_search_by_object_through_a_pipeline():
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    X = [x * 100 for x in X]
    grid = GridSearchCV(
        make_pipeline(ImageNormalizer(), tiny(train_split=None, max_epochs=1)),
        {"unetsegmenter__lr": [1e-3, 1e-2]},
        cv=KFold(3),
        scoring=ap50,
    ).fit(X, y)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


def test_cross_val_score_and_multimetric_grid_search():
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    three = [np.minimum(m, 2).astype(np.uint8) for m in y]
    seg = tiny(n_classes=3, train_split=None, max_epochs=1)
    scores = cross_val_score(seg, X, three, cv=KFold(3), scoring=dice_class_2)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    grid = GridSearchCV(
        make_pipeline(ImageNormalizer(), tiny(train_split=None, max_epochs=1)),
        {"unetsegmenter__lr": [1e-3]},
        cv=KFold(2),
        scoring={"iou": iou, "ap50": ap50},
        refit="ap50",
        n_jobs=2,  # scorers travel to joblib workers
    ).fit(X, y)
    assert {"mean_test_iou", "mean_test_ap50"} <= set(grid.cv_results_)
    assert 0 <= grid.score(X, y) <= 1


def test_class_and_whole_cell_scorers_by_name():
    rng = np.random.default_rng(0)
    X, y = [], []
    for _ in range(4):  # a "cell": cytoplasm ring (1) around a nucleus (2)
        yy, xx = np.mgrid[:40, :40]
        cy, cx = rng.integers(14, 26, 2)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mask = np.where(r2 < 36, 2, np.where(r2 < 144, 1, 0)).astype(np.uint8)
        X.append((mask * 0.4 + rng.normal(0, 0.05, mask.shape)).astype(np.float32))
        y.append(mask)
    seg = tiny(n_classes=3, max_epochs=20, lr=0.01, patches_per_image=4).fit(X, y)
    pred = list(seg.predict(X))
    per_class = dice_score(y, pred, n_classes=3, average=None)
    assert dice_class_2(seg, X, y) == pytest.approx(per_class[2])
    assert SCORERS["dice_class_1"](seg, X, y) == pytest.approx(per_class[1])
    assert SCORERS["iou_class_2"](seg, X, y) == pytest.approx(
        iou_score(y, pred, n_classes=3, average=None)[2]
    )
    assert get_scorer("dice_whole")(seg, X, y) == pytest.approx(whole_dice_score(y, pred))
    with pytest.raises(ValueError, match="class 3 does not exist in a 3-class"):
        SCORERS["dice_class_3"](seg, X, y)


SNAPSHOT = """
import sys, importlib, json
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)


def state(module):
    out = {}
    for key, value in list(vars(module).items()):
        out[key] = id(value)
        if isinstance(value, dict):
            out[key + "{}"] = sorted(map(repr, value))
        for attr in ("_parameter_constraints", "_skl_parameter_constraints"):
            table = getattr(value, attr, None)
            if isinstance(table, dict):  # e.g. the StrOptions of `scoring`
                out[key + attr] = sorted((k, sorted(map(str, v))) for k, v in table.items())
    return out


before = {n: state(m) for n, m in list(sys.modules.items()) if n.split(".")[0] == "sklearn"}
import skunet, skunet.scorers, skunet.evaluation, skunet.presets, skunet.cli  # noqa
after = {n: state(sys.modules[n]) for n in before}
changed = [f"{n}.{k}" for n in before for k in before[n] if before[n][k] != after[n].get(k)]
changed += [f"{n}.{k}" for n in before for k in after[n] if k not in before[n]]
assert not changed, changed
"""


def test_importing_skunet_changes_no_scikit_learn_module():
    import json
    import subprocess
    import sys

    # the scikit-learn modules that importing skunet loads, loaded first in a fresh
    # interpreter, then compared attribute by attribute after importing skunet
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json, skunet, skunet.scorers, skunet.evaluation, skunet.presets, "
            "skunet.cli, sklearn.metrics, sklearn.model_selection\n"
            "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] == 'sklearn')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    names = json.loads(listed.stdout)
    assert "sklearn.metrics._scorer" in names
    result = subprocess.run(
        [sys.executable, "-c", SNAPSHOT, json.dumps(names)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
