"""Training on Dask and Zarr images larger than memory: the same weights as in memory,
windows read on demand, bad input named before training."""

import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from conftest import disks, make_blobs, tiny
from skunet.fitting.training_set import training_set
from skunet.intake.windows import LazyClasses, LazyImage, object_boxes
from skunet.preprocessing import percentile_normalize
from skunet.targets import TARGETS, mask_classes
from skunet.tiling import IGNORE, window

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")


def labels_of(seed=0, shape=(90, 130), radius=14):
    rng = np.random.default_rng(seed)
    centers = [(rng.integers(0, shape[0]), rng.integers(0, shape[1])) for _ in range(25)]
    labels = disks(shape, centers, radius=radius)
    labels[labels > 0] += 1000  # ids need not be small or dense
    return labels


def fit_set(mask, n_classes, target, image=None, normalize=None):
    """``fit``'s training set of one image and mask (a zero image if none), in memory
    or, for Dask arrays, as the stand-ins ``fit`` reads window by window."""
    lazy = isinstance(mask, da.Array)
    if image is None:
        image = np.zeros((*mask.shape, 1), np.float32)
        image = da.from_array(image, chunks=(*mask.chunksize, 1)) if lazy else image
    image = LazyImage(image, np.float32) if lazy else np.moveaxis(image, -1, 0)
    return training_set([image], [mask], normalize=normalize, n_classes=n_classes, target=target)


def weights(net):
    return {k: v.clone() for k, v in net.module_.state_dict().items()}


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


class Recorded:
    """A Dask array of ``array`` whose computed blocks are counted in ``self.read``."""

    def __init__(self, array, chunks):
        self.read = []

        def record(block, block_info=None):
            self.read.append(tuple(block_info[0]["chunk-location"]))
            return block

        self.array = da.from_array(array, chunks=chunks).map_blocks(record, dtype=array.dtype)


def test_object_boxes_are_those_of_find_objects():
    labels = labels_of()
    ids, boxes = object_boxes(da.from_array(labels, chunks=(17, 23)))
    found = [(i, s) for i, s in enumerate(ndi.find_objects(labels), 1) if s is not None]
    assert ids.tolist() == [i for i, _ in found]
    assert boxes.tolist() == [[s[0].start, s[0].stop, s[1].start, s[1].stop] for _, s in found]
    empty_ids, _ = object_boxes(da.zeros((20, 20), chunks=7, dtype=int))
    assert len(empty_ids) == 0


@pytest.mark.parametrize(("target", "n_classes"), [("mask", 2), ("boundary", 3), ("distance", 5)])
def test_lazy_class_windows_equal_the_class_map_in_memory(target, n_classes):
    labels = labels_of()
    record = TARGETS[target]
    whole = record.encode(labels, n_classes)
    lazy = LazyClasses(
        da.from_array(labels, chunks=(17, 23)), lambda m: record.encode(m, n_classes), record.reach
    )
    made = fit_set(lazy.labels, n_classes, target).targets[0]
    spawned = pickle.loads(pickle.dumps(made))
    assert np.array_equal(spawned.region(0, 90, 0, 130), whole)  # what a worker unpickles
    rng = np.random.default_rng(1)
    for _ in range(150):  # inside, across borders, larger than the image (mirrored)
        top, left = rng.integers(-60, 100), rng.integers(-60, 140)
        h, w = rng.integers(1, 150, 2)
        assert np.array_equal(window(whole, top, left, h, w), window(lazy, top, left, h, w))


@pytest.mark.parametrize(("target", "n_classes"), [("mask", 2), ("boundary", 3), ("distance", 5)])
def test_lazy_class_windows_keep_unannotated_pixels_ignored(target, n_classes):
    """A Dask mask marking pixels nobody annotated (-1) encodes as the same mask in
    memory: those pixels IGNORE, the objects' classes unchanged."""
    labels = labels_of().astype(np.int32)
    labels[:, :40] = IGNORE
    whole = mask_classes(labels, n_classes, target)
    lazy = fit_set(da.from_array(labels, chunks=(17, 23)), n_classes, target).targets[0]
    assert (whole == IGNORE).any() and np.array_equal(lazy.region(0, 90, 0, 130), whole)
    rng = np.random.default_rng(2)
    for _ in range(50):
        top, left = rng.integers(0, 80), rng.integers(0, 120)
        h, w = rng.integers(1, 90, 2)
        assert np.array_equal(window(whole, top, left, h, w), window(lazy, top, left, h, w))


@pytest.mark.parametrize("normalize", ["percentile", None])
def test_the_training_set_reads_alike_in_memory_and_from_dask(normalize):
    """``skunet.fitting.training_set``, where fit's two kinds of images part ways: every
    window of the stand-ins equals the window of the image and class map in memory."""
    labels = labels_of()
    pixels = np.random.default_rng(3).integers(0, 4000, (*labels.shape, 2)).astype(np.uint16)
    memory = fit_set(labels, 5, "distance", pixels.astype(np.float32), normalize)
    lazy = fit_set(
        da.from_array(labels, chunks=(17, 23)),
        5,
        "distance",
        da.from_array(pixels, chunks=(17, 23, 2)),
        normalize,
    )
    assert memory.lazy_indices == [] and lazy.lazy_indices == [0]
    (image, classes), (lazy_image, lazy_classes) = memory[0], lazy[0]
    if normalize:
        np.testing.assert_allclose(image, percentile_normalize(np.moveaxis(pixels, -1, 0)))
    rng = np.random.default_rng(4)
    for _ in range(30):
        top, left = rng.integers(-40, 80), rng.integers(-40, 120)
        h, w = rng.integers(1, 120, 2)
        np.testing.assert_allclose(
            window(lazy_image, top, left, h, w), window(image, top, left, h, w), rtol=1e-6
        )
        same = window(lazy_classes, top, left, h, w), window(classes, top, left, h, w)
        assert np.array_equal(*same)


@pytest.mark.parametrize(
    ("target", "n_classes", "normalize"),
    [("mask", 2, "percentile"), ("distance", 4, None), ("boundary", 3, "percentile")],
)
def test_fit_on_dask_and_zarr_gives_the_weights_of_fit_in_memory(
    tmp_path, target, n_classes, normalize
):
    X, y = make_blobs(3, shapes=[(48, 48), (40, 56), (37, 45)])
    X = [np.clip(x * 4000, 0, 65535).astype(np.uint16) for x in X]  # integer pixels
    params = dict(target=target, n_classes=n_classes, normalize=normalize, train_split=None)
    in_memory = weights(tiny(**params).fit(X, y))
    X_dask = [da.from_array(x, chunks=(13, 17)) for x in X]
    y_dask = [da.from_array(m, chunks=(11, 19)) for m in y]
    assert same_weights(in_memory, weights(tiny(**params).fit(X_dask, y_dask)))
    X_zarr = []
    for i, x in enumerate(X):
        stored = zarr.create_array(
            tmp_path / f"{i}.zarr", shape=x.shape, chunks=(16, 16), dtype=x.dtype
        )
        stored[:] = x
        X_zarr.append(stored)
    mixed = [X_zarr[0], X[1], X_dask[2]]  # lazy and in-memory images in one list
    assert same_weights(in_memory, weights(tiny(**params).fit(mixed, [y[0], y_dask[1], y[2]])))


def test_fit_on_a_float_image_with_channels_equals_in_memory():
    X, y = make_blobs(2, shapes=[(40, 52)], channels=2)
    params = dict(normalize="percentile", train_split=None, max_epochs=1)
    in_memory = weights(tiny(**params).fit(X, y))
    lazy = [da.from_array(x, chunks=(16, 16, 1)) for x in X]
    assert same_weights(in_memory, weights(tiny(**params).fit(lazy, y)))


def test_fit_on_one_large_image_reads_only_the_windows_it_samples():
    labels = labels_of(shape=(512, 512), radius=9)
    image = ((labels > 0) * 150 + 40).astype(np.uint8)
    pixels, masks = Recorded(image, (64, 64)), Recorded(labels, (64, 64))
    net = tiny(train_split=None, max_epochs=1, patches_per_image=3, normalize=None)
    # 3 patches of 24 px see 0.66 % of the image per epoch: the estimator says so
    with pytest.warns(UserWarning, match=r"X\[0\] has 0.3 megapixels.* patches_per_image=456"):
        net.fit(pixels.array, masks.array)  # one image, not a list
    assert len(masks.read) >= 64  # the labels' values were checked in one pass
    # 3 windows of 24 + 2 * context pixels touch at most 4 blocks each (of 64)
    size = net.patch_size + 2 * net.geometry_.context
    assert size <= 64
    assert 0 < len(pixels.read) <= 3 * 4
    assert isinstance(repr(LazyImage(da.zeros((8, 8, 1)), np.float32)), str)


def test_a_lazy_image_in_the_validation_split_is_refused_before_training():
    X, y = make_blobs(5)
    net = tiny()  # the default train_split holds out images
    with pytest.raises(ValueError, match=r"X\[\d\] is a Dask / Zarr image .* train_split=None"):
        net.fit([da.from_array(x) for x in X], y)
    assert len(net.history) == 0


def test_bad_lazy_input_is_named_before_training():
    X, y = make_blobs(2)
    bad = X[1].copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\] \(shape \(48, 48\)\) has 1 NaN"):
        tiny(train_split=None).fit([X[0], da.from_array(bad)], y)
    with pytest.raises(ValueError, match=r"y\[0\] holds label 7 but n_classes=3"):
        tiny(n_classes=3, train_split=None).fit(X, [da.from_array(y[0] * 0 + 7), y[1]])
    with pytest.raises(ValueError, match=r"y\[1\] has shape \(40, 48\)"):
        tiny(train_split=None).fit(X, [y[0], da.from_array(y[1][:40])])
    with pytest.raises(ValueError, match=r"X\[0\] has shape \(2, 48, 48\)"):
        tiny(train_split=None).fit(da.from_array(np.stack(X)), y)
    with pytest.raises(TypeError, match="score and calibrate_instances take images in memory"):
        tiny(train_split=None, max_epochs=1).fit(X, y).score(da.from_array(X[0]), y[0])
