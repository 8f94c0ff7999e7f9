import numpy as np
import pytest

from conftest import disks
from skunet.plotting import plot_instances, plot_predictions


@pytest.fixture
def pair():
    labels = disks((32, 40), [(16, 12), (16, 26)], radius=6)
    image = (labels > 0).astype(np.float32) + 0.1
    return image, labels


def test_plot_predictions_writes_a_png_grid(pair, tmp_path):
    image, labels = pair
    fig = plot_predictions([image, image], [labels > 0] * 2, [labels > 0] * 2, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 2 * 3


def test_plot_instances_colours_each_object(pair, tmp_path):
    image, labels = pair
    fig = plot_instances([image], [labels], [labels], tmp_path / "i.png", titles=["pair"])
    assert (tmp_path / "i.png").exists()
    assert [ax.get_title() for ax in fig.axes] == ["pair", "true instances", "predicted instances"]
    shown = fig.axes[2].get_images()[0].get_array()
    colours = {tuple(np.round(shown[16, x], 3)) for x in (12, 26)}
    assert len(colours) == 2  # the two touching disks get different colours


def test_truth_column_is_optional(pair):
    image, labels = pair
    assert len(plot_instances([image], None, [labels]).axes) == 2


def test_plot_history_and_lr_schedule(blobs, tmp_path):
    from conftest import tiny
    from skunet.plotting import plot_history, plot_lr_schedule

    seg = tiny(max_epochs=3)
    planned = plot_lr_schedule(seg, n_train_images=5)  # before fitting: the plan alone
    line = planned.axes[0].get_lines()[0]
    assert len(line.get_ydata()) == 3 * 2  # 3 epochs of ceil(5 / 4) batches
    assert max(line.get_ydata()) == pytest.approx(seg.lr)

    seg.fit(*blobs)  # 6 images: 4 train, one batch per epoch, after the validation split
    fig = plot_history(seg, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["train loss", "valid loss", "valid IoU"]
    assert seg.history[:, "train_batch_count"] == [1, 1, 1]
    fig = plot_lr_schedule(seg, n_train_images=4)
    planned, recorded = (ln.get_ydata() for ln in fig.axes[0].get_lines())
    np.testing.assert_allclose(recorded, planned)  # training followed the plan
