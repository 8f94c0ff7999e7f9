"""skunet.intake.annotation: partly annotated masks found, and fine_tune's ``partial``."""

import numpy as np
import pytest

from conftest import tiny
from skunet.intake.annotation import labelled_only, partly_annotated
from skunet.pretrained import fine_tune
from skunet.tiling import IGNORE


def crowd(n_cells=12, shape=(96, 96), seed=0, keep=None):
    """A field of textured cells (noisy disks on a flat, dim background) and its labels,
    all of them or the first ``keep`` only."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for i in range(n_cells):
        r, c = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        rr, cc = disk((r, c), 7, shape=shape)
        labels[rr, cc] = i + 1
    image = 0.1 + rng.normal(0, 0.02, shape) + (labels > 0) * (0.5 + rng.normal(0, 0.15, shape))
    if keep is not None:
        labels[labels > keep] = 0
    return image.astype(np.float32), labels


def test_a_crowd_with_a_few_cells_labelled_is_found_and_a_sparse_field_is_not():
    complete = [crowd(seed=s) for s in range(4)]
    partial = crowd(seed=9, keep=2)  # 2 of 12 cells painted
    sparse = crowd(n_cells=2, seed=10)  # 2 cells, both labelled: complete
    X, y = zip(*complete, partial, sparse)
    assert partly_annotated(X, y) == [4]
    # the share alone would take the sparse field too; the pixel classifier clears it
    assert (y[5] > 0).mean() < 0.5 * np.median([(m > 0).mean() for m in y])


def test_what_is_never_taken_as_partial():
    X, y = zip(*(crowd(seed=s) for s in range(3)))
    few = crowd(seed=9, keep=2)
    assert partly_annotated([*X[:1], few[0]], [*y[:1], few[1]]) == []  # under three masks
    marked = labelled_only(few[1], np.arange(96)[:, None] < 48)  # says what it annotates
    assert partly_annotated([*X, few[0]], [*y, marked]) == []
    empty = np.zeros_like(y[0])  # an image without cells is complete
    assert partly_annotated([*X, few[0]], [*y, empty]) == []
    floats = [m.astype(np.float32) for m in (*y, few[1])]  # for fit to refuse, by name
    assert partly_annotated([*X, few[0]], floats) == []
    assert partly_annotated([*X, few[0]], [*y, few[1][:50]]) == []  # shapes differ: fit's


def test_labelled_only_marks_the_rest_unannotated():
    mask = np.array([[0, 3], [65535, 0]], np.uint16)
    out = labelled_only(mask)
    assert out.dtype == np.int32 and out.tolist() == [[IGNORE, 3], [65535, IGNORE]]
    inside = np.array([[True, False], [True, True]])
    assert labelled_only(mask, inside).tolist() == [[0, IGNORE], [65535, 0]]
    with pytest.raises(TypeError, match="integer labels is needed, not dtype float32"):
        labelled_only(mask.astype(np.float32))


@pytest.fixture(scope="module")
def crowds():
    """A fitted tiny base, five crowds, the last with 2 of its 12 cells labelled."""
    X, y = zip(*(crowd(seed=s) for s in range(4)), crowd(seed=9, keep=2))
    base = tiny(target="boundary", n_classes=3, max_epochs=1).fit(list(X[:2]), list(y[:2]))
    return base, list(X), list(y)


def test_fine_tune_finds_warns_and_records(crowds):
    base, X, y = crowds
    with pytest.warns(UserWarning, match="mask 4 labels far less"):
        seg = fine_tune(base, X, y, max_epochs=1)
    assert seg.fine_tuned_["partial"] == [4]
    assert fine_tune(base, X, y, max_epochs=1, partial=False).fine_tuned_["partial"] == []


def test_fine_tune_partial_chosen_and_refused(crowds):
    base, X, y = crowds
    chosen = fine_tune(base, X, y, max_epochs=1, partial=[0, 4])
    assert chosen.fine_tuned_["partial"] == [0, 4]
    every = fine_tune(base, X, y, max_epochs=1, partial=True)
    assert every.fine_tuned_["partial"] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="partial names masks \\[7\\], but y has 5"):
        fine_tune(base, X, y, partial=[7])
    with pytest.raises(ValueError, match="partial='some'"):
        fine_tune(base, X, y, partial="some")


def test_the_command_line_names_the_partial_mask_and_takes_complete(crowds, tmp_path, capsys):
    import tifffile

    from skunet.cli import main

    base, X, y = crowds
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i, (x, m) in enumerate(zip(X, y)):
        tifffile.imwrite(tmp_path / "images" / f"c{i}.tif", x)
        tifffile.imwrite(tmp_path / "masks" / f"c{i}.tif", m)
    model = base.save(tmp_path / "base.skunet")
    args = ["fine-tune", "--model", str(model), str(tmp_path / "images"),
            str(tmp_path / "masks"), "--epochs", "1"]  # fmt: skip
    with pytest.warns(UserWarning, match="mask 4"):
        assert main([*args, "--out", str(tmp_path / "a.skunet")]) == 0
    err = capsys.readouterr().err
    assert "taken as partly annotated (--complete if not): " in err and "c4.tif" in err
    assert main([*args, "--complete", "--out", str(tmp_path / "b.skunet")]) == 0
    assert "partly annotated" not in capsys.readouterr().err
