"""Prediction at another magnification: ``predict*(X, scale=...)``."""

import math

import numpy as np
import pytest

from skunet.prediction.rescale import check_scale, rescale_image, resize_probabilities


def test_rescale_image_resizes_in_the_networks_units():
    image = np.full((3, 10, 7), 255, np.uint8)
    out = rescale_image(image, 1.5)
    assert out.shape == (3, 15, 10) and out.dtype == np.float32
    assert np.allclose(out, 1.0)  # uint8 read as the network reads it: / 255
    assert rescale_image(image, 1) is image


def test_resized_probabilities_still_sum_to_one():
    rng = np.random.default_rng(0)
    p = rng.random((3, 40, 30)).astype(np.float32)
    p /= p.sum(0)
    for shape in [(20, 15), (57, 41), (40, 30)]:
        out = resize_probabilities(p, shape)
        assert out.shape == (3, *shape)
        np.testing.assert_allclose(out.sum(0), 1, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "2", None])
def test_a_bad_scale_is_refused_by_name(bad):
    with pytest.raises((ValueError, TypeError), match="scale"):
        check_scale(bad)


@pytest.fixture(scope="module")
def fitted():
    from conftest import make_blobs, tiny

    X, y = make_blobs(4, shapes=[(48, 48)])
    return tiny(target="distance", n_classes=4, max_epochs=1).fit(X, y), X


def test_results_come_back_at_the_images_own_size(fitted):
    seg, X = fitted
    images = [X[0], X[1][:37, :45]]
    for scale in (0.5, 1.3, 2):
        proba = seg.predict_proba(images, scale=scale)
        assert [p.shape for p in proba] == [(4, 48, 48), (4, 37, 45)]
        np.testing.assert_allclose(proba[1].sum(0), 1, atol=1e-5)
        for method in (seg.predict, seg.predict_instances, seg.predict_uncertainty):
            assert [m.shape for m in method(images, scale=scale)] == [(48, 48), (37, 45)]


def test_the_network_sees_the_image_resized(fitted, monkeypatch):
    import skunet.predictor as predictor

    seg, X = fitted
    seen = []
    real = predictor.predict_compact

    def spy(module, images, *args, **kwargs):
        seen.extend(im.shape for im in images)
        return real(module, images, *args, **kwargs)

    monkeypatch.setattr(predictor, "predict_compact", spy)
    same = seg.predict_proba([X[0]], scale=1.0)
    assert seen == [(1, 48, 48)]
    np.testing.assert_array_equal(same, seg.predict_proba([X[0]]))
    seen.clear()
    seg.predict_instances([X[0][:30, :20]], scale=2)
    assert seen == [(1, 60, 40)]


def test_lazy_images_need_scale_one(fitted, tmp_path):
    import dask.array as da
    import zarr

    seg, X = fitted
    lazy = da.from_array(X[0], chunks=24)
    for method in (seg.predict, seg.predict_proba, seg.predict_instances):
        with pytest.raises(ValueError, match="scale=2 rescales in-memory images only"):
            method(lazy, scale=2)
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=(48, 48), dtype="u1")
    with pytest.raises(ValueError, match="scale"):
        seg.predict(X[0], out=out, scale=0.5)
    assert seg.predict(lazy, scale=1).shape == (48, 48)


def test_rescaling_rescues_the_nuclei_model_on_half_size_images():
    """The shipped nuclei model on the bundled sample shrunk 2x: with ``scale=2`` it
    finds the nuclei it knows at their training size again."""
    from skimage.transform import resize

    from skunet.datasets import load_sample
    from skunet.metrics import match_dataset
    from skunet.pretrained import load_model

    X, y = load_sample("nuclei")
    small = [rescale_image(x[None], 0.5)[0] for x in X[1:5]]
    truth = [resize(t, s.shape, order=0, anti_aliasing=False, preserve_range=True).astype(int)
             for t, s in zip(y[1:5], small)]  # fmt: skip
    seg = load_model("nuclei")
    as_is = match_dataset(truth, list(seg.predict_instances(small)), thresh=[0.5])[0]
    rescaled = match_dataset(truth, list(seg.predict_instances(small, scale=2)), thresh=[0.5])[0]
    assert rescaled.accuracy > as_is.accuracy + 0.05, (rescaled.accuracy, as_is.accuracy)


def test_the_command_line_predicts_rescaled(tmp_path, capsys):
    import tifffile

    from skunet.cli import main
    from skunet.datasets import load_sample

    image = load_sample("nuclei")[0][1][::2, ::2]  # half size
    tifffile.imwrite(tmp_path / "half.tif", image)
    args = ["predict", "--model", "nuclei", str(tmp_path / "half.tif"), "--out"]
    assert main([*args, str(tmp_path / "o"), "--scale", "2"]) == 0
    labels = tifffile.imread(tmp_path / "o" / "half.tif")
    from skunet.pretrained import load_model

    np.testing.assert_array_equal(
        labels, load_model("nuclei").predict_instances([image], scale=2)[0]
    )
    capsys.readouterr()
    assert main([*args, str(tmp_path / "p"), "--scale", "0"]) == 2
    assert "scale must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # refused before anything was written
    zarr_args = ["predict", "--model", "nuclei", str(tmp_path / "in.zarr"), "--out"]
    assert main([*zarr_args, str(tmp_path / "q.zarr"), "--scale", "2"]) == 2
    assert "--scale is for image files" in capsys.readouterr().err


def test_a_bad_scale_is_refused_before_the_images_are_read(fitted, monkeypatch):
    import skunet.predictor as predictor

    seg, X = fitted
    monkeypatch.setattr(predictor, "normalize_images", lambda *a: pytest.fail("images read"))
    for method in (seg.predict, seg.predict_proba, seg.predict_instances, seg.predict_uncertainty):
        with pytest.raises(ValueError, match="scale must be a number > 0"):
            method([X[0]], scale=-2)
