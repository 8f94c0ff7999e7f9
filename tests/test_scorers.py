import numpy as np
import pytest
from skimage.measure import label
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from conftest import make_blobs, tiny
from skunet.metrics import dice_score, iou_score, match_dataset, whole_dice_score
from skunet.preprocessing import ImageNormalizer
from skunet.scorers import SCORERS


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    return (
        tiny(max_epochs=25, lr=0.01, patches_per_image=4, module__base_channels=8).fit(X, y),
        X,
        y,
    )


def test_registered_with_sklearn():
    assert {"iou", "dice", "ap50", "f1_50"} <= set(get_scorer_names())
    assert get_scorer("ap50") is not None


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


def test_grid_search_by_name_through_a_pipeline():
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    X = [x * 100 for x in X]
    grid = GridSearchCV(
        make_pipeline(ImageNormalizer(), tiny(train_split=None, max_epochs=1)),
        {"unetsegmenter__lr": [1e-3, 1e-2]},
        cv=KFold(3),
        scoring="ap50",
    ).fit(X, y)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


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
    assert get_scorer("dice_class_2")(seg, X, y) == pytest.approx(per_class[2])
    assert SCORERS["dice_class_1"](seg, X, y) == pytest.approx(per_class[1])
    assert SCORERS["iou_class_2"](seg, X, y) == pytest.approx(
        iou_score(y, pred, n_classes=3, average=None)[2]
    )
    assert get_scorer("dice_whole")(seg, X, y) == pytest.approx(whole_dice_score(y, pred))
    with pytest.raises(ValueError, match="class 3 does not exist in a 3-class"):
        SCORERS["dice_class_3"](seg, X, y)


def test_importing_skunet_alone_registers_the_names():
    import subprocess
    import sys

    code = (
        "import skunet\n"
        "from sklearn.metrics import get_scorer_names\n"
        "from sklearn.model_selection import cross_val_score\n"
        "from sklearn.utils._param_validation import validate_parameter_constraints as v\n"
        "assert {'ap50', 'dice_class_2', 'dice_whole'} <= set(get_scorer_names())\n"
        "v(cross_val_score._skl_parameter_constraints, {'scoring': 'dice_class_2'}, 'c')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
