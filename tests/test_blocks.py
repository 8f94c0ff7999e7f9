"""Block-wise prediction of Dask and Zarr images: equal to the in-memory prediction at
any chunking (probabilities, classes, instances), Zarr output, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from conftest import disks, make_blobs, tiny
from skunet.lazy import lazy_percentiles
from skunet.prediction.inference import InferenceSettings
from skunet.predictor import Predictor
from skunet.targets import distance_classes
from skunet.tiling import Geometry

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")


def same_objects(a, b):
    """Whether two label images are equal up to renumbering."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b)) and bool(
        ((pairs[0] == 0) == (pairs[1] == 0)).all()
    )


def zarr_of(path, array, chunks):
    """``array`` written into a new Zarr array at ``path``."""
    stored = zarr.create_array(path, shape=array.shape, chunks=chunks, dtype=array.dtype)
    stored[:] = array
    return stored


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(4, shapes=[(48, 48)])
    return tiny(normalize="percentile", tile_size=32, tta=True, max_epochs=1).fit(X, y)


def slide(seed=0, shape=(90, 130)):
    rng = np.random.default_rng(seed)
    centers = [(rng.integers(0, shape[0]), rng.integers(0, shape[1])) for _ in range(25)]
    labels = disks(shape, centers, radius=int(rng.integers(4, 12)))
    image = (labels > 0) * 3000 + rng.normal(800, 200, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


@pytest.mark.parametrize("chunks", [(16, 16), (37, 50), (90, 64)])
def test_probabilities_and_classes_equal_the_in_memory_ones(fitted, chunks):
    image, _ = slide()
    lazy = da.from_array(image, chunks=chunks)
    got = fitted.predict_proba(lazy)
    assert isinstance(got, da.Array) and got.chunks[1:] == lazy.chunks
    np.testing.assert_allclose(got.compute(), fitted.predict_proba([image])[0], atol=1e-5)
    classes = fitted.predict(lazy).compute()
    reference = fitted.predict([image])[0]
    assert classes.dtype == np.uint8 and (classes != reference).mean() < 1e-4


def test_a_zarr_image_into_a_zarr_output(fitted, tmp_path):
    image, _ = slide(1)
    source = zarr_of(tmp_path / "in.zarr", image, (32, 40))
    out = zarr.create_array(
        tmp_path / "out.zarr", shape=(2, *image.shape), chunks=(2, 50, 50), dtype="float32"
    )
    assert fitted.predict_proba(source, out=out) is out
    np.testing.assert_allclose(out[:], fitted.predict_proba([image])[0], atol=1e-5)
    record = out.attrs["skunet_blocks"]
    assert len(record["done"]) == 2 * 3
    other = tiny(normalize="percentile", tile_size=32, max_epochs=1, random_state=1)
    other.fit(*make_blobs(2))
    with pytest.raises(ValueError, match="holds another prediction"):
        other.predict_proba(source, out=out)
    wrong = zarr.create_array(tmp_path / "w.zarr", shape=image.shape, chunks=(50, 50), dtype="f4")
    with pytest.raises(ValueError, match=r"out has shape \(90, 130\); this prediction needs"):
        fitted.predict_proba(source, out=wrong)


def test_lazy_input_is_checked_without_reading_it(fitted):
    with pytest.raises(ValueError, match=r"X has shape \(5, 40, 40\)"):
        fitted.predict(da.zeros((5, 40, 40), chunks=10))
    with pytest.raises(TypeError, match="complex"):
        fitted.predict(da.zeros((40, 40), dtype=complex, chunks=10))
    with pytest.raises(TypeError, match=r"dask array: fit, predict, .* score and calibrate_instan"):
        fitted.score(da.zeros((40, 40), chunks=10), np.zeros((40, 40), int))
    with pytest.raises(ValueError, match="postprocess"):
        fitted.set_params(postprocess=np.asarray).predict(da.zeros((40, 40), chunks=10))
    fitted.set_params(postprocess=None)


@pytest.mark.parametrize("method", ["predict_proba", "predict", "predict_instances"])
def test_a_nan_in_a_lazy_image_is_refused_before_out_is_written(fitted, tmp_path, method):
    image = np.random.default_rng(0).normal(800, 200, (90, 130)).astype(np.float32)
    image[70, 100] = np.nan
    image[80, 110] = np.inf  # the same block, a later row
    message = (
        r"X \(shape \(90, 130, 1\)\) has 2 NaN or infinite pixel\(s\), the first at row 70, "
        r"column 100, in block \(2, 3\) \(rows 64:90, columns 96:128\)"
    )
    with pytest.raises(ValueError, match=message):
        getattr(fitted, method)(da.from_array(image, chunks=(32, 32)))
    lead = (2,) if method == "predict_proba" else ()
    dtype = "int32" if method == "predict_instances" else "float32"
    out = zarr.create_array(tmp_path / "out.zarr", shape=(*lead, 90, 130), chunks=(*lead, 32, 32),
                            dtype=dtype, fill_value=-1)  # fmt: skip
    with pytest.raises(ValueError, match=message):
        getattr(fitted, method)(zarr_of(tmp_path / "in.zarr", image, (32, 32)), out=out)
    assert (out[:] == -1).all() and "skunet_blocks" not in dict(out.attrs)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 4000, (41, 37, 2)).astype(np.uint16),
        np.random.default_rng(1).integers(-3, 3, (41, 37, 1)).astype(np.int8),
        np.random.default_rng(2).random((41, 37, 1)) > 0.7,
        np.random.default_rng(3).normal(0, 1, (41, 37, 2)).astype(np.float32),
        np.random.default_rng(4).integers(-9, 9, (41, 37, 1)).astype(np.int64),  # repeats
    ],
)
def test_lazy_percentiles_are_numpys(image):
    values = image.view(np.uint8) if image.dtype == bool else image  # numpy's needs numbers
    wanted = np.percentile(values, (0, 1, 50, 99.8, 100), axis=(0, 1))
    got = lazy_percentiles(da.from_array(image, chunks=(10, 16, 1)), (0, 1, 50, 99.8, 100))
    np.testing.assert_array_equal(got, wanted)


class Logits(nn.Module):
    """A "network" whose input is its logits: the test chooses the probabilities."""

    size_divisor = 1

    def forward(self, x):
        return x * 1.0


def predictor_of(logits_channels, n_classes, target, tile=24):
    net = Logits()
    settings = InferenceSettings(tile_size=tile)
    return Predictor(
        net, Geometry(net, padding=2), settings, logits_channels, n_classes=n_classes, target=target
    )


def spiral(shape=(70, 90)):
    """A spiral reaching over the whole image, disks of every size, diagonal contacts."""
    labels = disks(shape, [(10, 10), (50, 20), (60, 75), (20, 70)], radius=9)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    angle, radius = np.arctan2(yy - 35, xx - 45), np.hypot(yy - 35, xx - 45)
    arm = (np.mod(radius - 3 * angle, 6 * np.pi) < 4) & (radius > 4) & (radius < 34)
    labels[arm & (labels == 0)] = labels.max() + 1
    labels[31, 31] = labels[32, 32] = labels.max() + 1  # touching only at a corner
    return labels


@pytest.mark.parametrize("chunks", [(8, 8), (16, 23), (35, 90)])
def test_components_across_blocks_equal_the_in_memory_ones(chunks):
    labels = spiral()
    logits = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
    p = predictor_of(1, 2, "mask")
    wanted = p.predict_instances([logits])[0]
    got = p.predict_instances(da.from_array(logits, chunks=chunks)).compute()
    assert got.dtype == np.int64 and got.max() == wanted.max()
    assert same_objects(got, wanted)


@pytest.mark.parametrize("chunks", [(8, 8), (19, 30), (70, 45)])
@pytest.mark.parametrize("split", ["auto", None])
def test_watershed_regions_across_blocks_equal_the_in_memory_ones(chunks, split):
    labels = spiral()
    touching = disks(labels.shape, [(40, 40), (40, 52)], radius=8)  # two touching objects
    labels = np.where(touching > 0, touching + labels.max(), labels)
    levels = distance_classes(labels, 4)
    rng = np.random.default_rng(0)
    logits = 6.0 * np.eye(5, dtype=np.float32)[levels] + rng.normal(0, 1, (*labels.shape, 5))
    logits = logits.astype(np.float32)
    p = predictor_of(5, 5, "distance")
    wanted = p.predict_instances([logits], split=split)[0]
    got = p.predict_instances(da.from_array(logits, chunks=(*chunks, 5)), split=split)
    got = got.compute()
    assert got.max() == wanted.max() >= 2 and same_objects(got, wanted)


def test_instances_into_a_zarr_output_of_a_narrow_dtype(tmp_path):
    logits = np.where(spiral() > 0, 4.0, -4.0).astype(np.float32)
    p = predictor_of(1, 2, "mask")
    out = zarr.create_array(
        tmp_path / "l.zarr", shape=logits.shape, chunks=(20, 20), dtype="uint16"
    )
    p.predict_instances(da.from_array(logits, chunks=16), out=out)
    assert same_objects(out[:], p.predict_instances([logits])[0])
    grid = np.kron(np.ones((30, 30)), np.pad(np.ones((3, 3)), (0, 2)))  # 900 squares
    many = np.where(grid > 0, 4.0, -4.0).astype(np.float32)
    tiny_out = zarr.create_array(tmp_path / "t.zarr", shape=many.shape, chunks=(40, 40), dtype="i1")
    with pytest.raises(ValueError, match="int8; 900 objects need a wider integer dtype"):
        p.predict_instances(da.from_array(many, chunks=40), out=tiny_out)
    boolean = zarr.create_array(tmp_path / "b.zarr", shape=logits.shape, chunks=(20, 20), dtype="?")
    with pytest.raises(ValueError, match="dtype bool; instance labels need an integer dtype"):
        p.predict_instances(da.from_array(logits, chunks=16), out=boolean)


class Failing:
    """``function`` raising once it has been called ``after`` times (counting calls)."""

    def __init__(self, function, after=None):
        self.function, self.after, self.calls = function, after, 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.calls += 1
            if self.after is not None and self.calls > self.after:
                raise RuntimeError("killed")
        return self.function(*args, **kwargs)


@pytest.mark.parametrize("inside_a_group", [False, True])
def test_instances_into_zarr_resume_after_a_failure_in_either_pass(
    tmp_path, monkeypatch, inside_a_group
):
    import skunet.prediction.block_instances as block_instances
    import skunet.prediction.blocks as blocks

    monkeypatch.setattr(blocks, "WAVE", 4)
    labels = spiral()
    touching = disks(labels.shape, [(40, 40), (40, 52)], radius=8)  # two touching objects
    levels = distance_classes(np.where(touching > 0, touching + labels.max(), labels), 4)
    noise = np.random.default_rng(0).normal(0, 1, (*labels.shape, 5))
    logits = (6.0 * np.eye(5)[levels] + noise).astype(np.float32)
    p = predictor_of(5, 5, "distance")  # watershed: merged regions are decoded again
    lazy = da.from_array(logits, chunks=(10, 10, 5))  # 7 x 9 blocks
    if inside_a_group:
        group = zarr.open_group(tmp_path / "o.zarr", mode="w")
        out = group.create_array("0", shape=labels.shape, chunks=(10, 10), dtype="i4")
        stash = tmp_path / "o.zarr" / "0.skunet-partial"
    else:
        out = zarr.create_array(
            tmp_path / "o.zarr", shape=labels.shape, chunks=(10, 10), dtype="i4"
        )
        stash = tmp_path / "o.zarr.skunet-partial"
    probabilities = Failing(blocks.block_probabilities, after=9)
    monkeypatch.setattr(blocks, "block_probabilities", probabilities)
    with pytest.raises(RuntimeError, match="killed"):
        p.predict_instances(lazy, split=None, out=out)
    time.sleep(1)  # the tasks that had started when one failed finish
    assert len(zarr.open_group(stash).attrs["skunet_blocks"]["done"]) == 8  # two waves
    final = Failing(block_instances._final_block, after=6)
    probabilities.calls, probabilities.after = 0, None
    monkeypatch.setattr(block_instances, "_final_block", final)
    with pytest.raises(RuntimeError, match="killed"):
        p.predict_instances(lazy, split=None, out=out)
    time.sleep(1)
    assert probabilities.calls == 63 - 8  # stashed blocks were not predicted again
    assert len(out.attrs["skunet_blocks"]["done"]) == 4 and stash.exists()
    probabilities.calls, final.calls, final.after = 0, 0, None
    assert p.predict_instances(lazy, split=None, out=out) is out
    assert probabilities.calls == 0 and final.calls == 63 - 4
    assert not stash.exists() and len(out.attrs["skunet_blocks"]["done"]) == 63
    wanted = p.predict_instances([logits], split=None)[0]
    assert out[:].max() == wanted.max() >= 2 and same_objects(out[:], wanted)
    assert p.predict_instances(lazy, split=None, out=out) is out  # finished: nothing to do
    assert probabilities.calls == 0
    with pytest.raises(ValueError, match="holds another prediction"):
        p.predict_instances(lazy, split=None, threshold=0.3, out=out)


def test_splits_that_need_the_whole_image_are_refused():
    p = predictor_of(1, 2, "mask")
    p.membranes = True
    with pytest.raises(ValueError, match=r"membrane_instances with split=2\.0 needs the whole"):
        p.predict_instances(da.zeros((40, 40), chunks=20, dtype="f4"), split=2.0)


RESUMED = """
import sys, time, zarr, numpy as np, torch
import skunet.prediction.blocks as blocks
from skunet import UNetSegmenter
seg = UNetSegmenter.load(sys.argv[1])
run = blocks.block_probabilities
def slow(*args, **kwargs):
    time.sleep(float(sys.argv[4]))
    with open(sys.argv[3], "a") as f:
        f.write("x")
    return run(*args, **kwargs)
blocks.block_probabilities = slow
source = zarr.open_array(sys.argv[2] + "/in.zarr", mode="r")
out = zarr.open_array(sys.argv[2] + "/out.zarr", mode="r+")
getattr(seg, sys.argv[5])(source, out=out)
"""


@pytest.mark.parametrize("method", ["predict_proba", "predict_instances"])
def test_a_killed_prediction_resumes_where_it_stopped(fitted, tmp_path, method):
    image, _ = slide(2, shape=(96, 96))
    zarr_of(tmp_path / "in.zarr", image, (16, 16))
    lead = (2,) if method == "predict_proba" else ()
    out = zarr.create_array(
        tmp_path / "out.zarr", shape=(*lead, 96, 96), chunks=(*lead, 16, 16), dtype="f4"
    )
    if method == "predict_instances":  # its first pass is recorded in the stash
        out = zarr.create_array(
            tmp_path / "out.zarr", shape=(96, 96), chunks=(16, 16), dtype="i4", overwrite=True
        )
    record = tmp_path / ("out.zarr" if lead else "out.zarr.skunet-partial") / "zarr.json"
    fitted.save(tmp_path / "m.skunet")
    script, calls = tmp_path / "run.py", tmp_path / "calls"
    script.write_text(RESUMED)
    args = [sys.executable, str(script), str(tmp_path / "m.skunet"), str(tmp_path), str(calls)]
    proc = subprocess.Popen([*args, "0.3", method], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    done = []
    while time.monotonic() < deadline and not done:
        time.sleep(0.2)
        if record.exists():
            meta = json.loads(record.read_text())
            done = meta.get("attributes", {}).get("skunet_blocks", {}).get("done", [])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(done) < 36, "the run must be killed part-way"
    calls.unlink()
    subprocess.run([*args, "0", method], check=True)
    assert len(calls.read_text()) == 36 - len(done)  # finished blocks were not redone
    if lead:
        np.testing.assert_allclose(out[:], fitted.predict_proba([image])[0], atol=1e-5)
    else:
        assert same_objects(out[:], fitted.predict_instances([image])[0])
        assert not (tmp_path / "out.zarr.skunet-partial").exists()
    assert len(zarr.open_array(tmp_path / "out.zarr").attrs["skunet_blocks"]["done"]) == 36


@pytest.mark.slow
def test_a_local_cluster_predicts_a_zarr_image_into_a_zarr_output(fitted, tmp_path):
    distributed = pytest.importorskip("distributed")
    image, _ = slide(3)
    source = zarr_of(tmp_path / "in.zarr", image, (30, 40))
    out = zarr.create_array(
        tmp_path / "out.zarr", shape=(2, *image.shape), chunks=(2, 45, 65), dtype="f4"
    )
    threads = torch.get_num_threads()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        fitted.predict_proba(source, out=out)
        labels = zarr.create_array(
            tmp_path / "l.zarr", shape=image.shape, chunks=(45, 65), dtype="i4"
        )
        fitted.predict_instances(source, out=labels)  # workers write the stash
        lazy = fitted.predict_proba(da.from_zarr(source))
        keys = [k for k in lazy.__dask_graph__() if "skunet-net" in str(k)]
        instances = fitted.predict_instances(da.from_zarr(source)).compute()
        holders = client.run(
            lambda dask_worker: sum("skunet-net" in str(k) for k in dask_worker.data)
        )
    torch.set_num_threads(threads)
    np.testing.assert_allclose(out[:], fitted.predict_proba([image])[0], atol=1e-4)
    assert len(keys) == 1  # the network is one key of the graph
    assert all(n <= 1 for n in holders.values())
    assert same_objects(instances, fitted.predict_instances([image])[0])
    assert same_objects(labels[:], instances) and not (tmp_path / "l.zarr.skunet-partial").exists()


@pytest.mark.slow
def test_nuclei_of_a_dsb2018_mosaic_equal_the_in_memory_ones():
    from skunet.datasets import load_sample
    from skunet.pretrained import load_model

    seg = load_model("nuclei", tile_size=128)
    X, _ = load_sample()
    tiles = [x[:128, :128] for x in X if min(x.shape[:2]) >= 128][:6]
    mosaic = np.block([tiles[:3], tiles[3:6]])  # nuclei straddle the tiles' borders
    wanted = seg.predict_instances([mosaic])[0]
    # blocks smaller than the large nuclei, and not a divisor of the image
    got = seg.predict_instances(da.from_array(mosaic, chunks=(40, 56))).compute()
    assert got.max() == wanted.max() > 20 and same_objects(got, wanted)


def test_open_zarr_image_reads_ome_zarr_axes(tmp_path):
    from skunet.lazy import create_zarr_image, open_zarr_image

    planes = np.arange(2 * 30 * 40, dtype=np.uint16).reshape(1, 2, 1, 30, 40)
    ome = create_zarr_image(tmp_path / "i.zarr", planes.shape, (1, 2, 1, 16, 16), "u2", "tczyx")
    ome[:] = planes
    image = open_zarr_image(tmp_path / "i.zarr")
    assert image.shape == (30, 40, 2)
    np.testing.assert_array_equal(image.compute(), np.moveaxis(planes[0, :, 0], 0, -1))
    stack = create_zarr_image(tmp_path / "z.zarr", (3, 30, 40), (1, 30, 40), "u1", "zyx")
    with pytest.raises(ValueError, match="has a z axis of 3 entries"):
        open_zarr_image(tmp_path / "z.zarr")
    with pytest.raises(FileNotFoundError, match="no Zarr array or group"):
        open_zarr_image(tmp_path / "none.zarr")
    assert stack.shape == (3, 30, 40)


def test_the_command_line_predicts_zarr_into_ome_zarr_and_resumes(fitted, tmp_path, capsys):
    from skunet.cli import main
    from skunet.lazy import create_zarr_image

    image, _ = slide(4)
    source = create_zarr_image(tmp_path / "in.zarr", image.shape, (32, 32), image.dtype, "yx")
    source[:] = image
    fitted.save(tmp_path / "m.skunet")
    args = ["predict", "--model", str(tmp_path / "m.skunet"), str(tmp_path / "in.zarr")]
    assert main([*args, "--out", str(tmp_path / "c.zarr"), "--chunks", "40"]) == 0
    classes = zarr.open_group(tmp_path / "c.zarr")["0"]
    assert classes.chunks == (40, 40)
    assert (classes[:] != fitted.predict([image])[0]).mean() < 1e-4
    assert main([*args, "--out", str(tmp_path / "c.zarr"), "--chunks", "40"]) == 0
    assert "resuming" in capsys.readouterr().out  # all blocks done: nothing recomputed
    labels = [*args, "--out", str(tmp_path / "l.zarr"), "--instances", "--chunks", "50"]
    assert main(labels) == 0
    got = zarr.open_group(tmp_path / "l.zarr")["0"][:]
    assert same_objects(got, fitted.predict_instances([image])[0])
    assert main(labels) == 0
    assert "resuming" in capsys.readouterr().out
    assert not (tmp_path / "l.zarr" / "0.skunet-partial").exists()
    assert main([*labels, "--overwrite"]) == 0
    assert main([*args, "--out", str(tmp_path / "x"), "--chunks", "50"]) == 2
    assert "a Zarr input is predicted into a .zarr path" in capsys.readouterr().err


def test_an_image_within_one_tile_fills_a_zarr_output_and_records_it(tmp_path):
    labels = spiral()[:40, :44]
    logits = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
    p = predictor_of(1, 2, "mask", tile=64)  # predicted whole, written block by block
    out = zarr.create_array(tmp_path / "o.zarr", shape=logits.shape, chunks=(10, 10), dtype="i4")
    assert p.predict_instances(da.from_array(logits, chunks=10), out=out) is out
    assert same_objects(out[:], p.predict_instances([logits])[0])
    assert len(out.attrs["skunet_blocks"]["done"]) == 4 * 5
    assert not (tmp_path / "o.zarr.skunet-partial").exists()


def test_a_new_output_does_not_reuse_the_stash_of_another_image(tmp_path, monkeypatch):
    import skunet.prediction.blocks as blocks

    monkeypatch.setattr(blocks, "WAVE", 4)
    p = predictor_of(1, 2, "mask")
    first = np.where(spiral() > 0, 4.0, -4.0).astype(np.float32)
    second = first[::-1].copy()  # same shape and dtype: the same job's fingerprint
    out = zarr.create_array(tmp_path / "o.zarr", shape=first.shape, chunks=(10, 10), dtype="i4")
    monkeypatch.setattr(blocks, "block_probabilities", Failing(blocks.block_probabilities, 5))
    with pytest.raises(RuntimeError, match="killed"):
        p.predict_instances(da.from_array(first, chunks=10), out=out)
    time.sleep(1)
    assert len(zarr.open_group(tmp_path / "o.zarr.skunet-partial").attrs["skunet_blocks"]["done"])
    monkeypatch.undo()
    out = zarr.create_array(
        tmp_path / "o.zarr", shape=first.shape, chunks=(10, 10), dtype="i4", overwrite=True
    )
    p.predict_instances(da.from_array(second, chunks=10), out=out)
    assert same_objects(out[:], p.predict_instances([second])[0])
