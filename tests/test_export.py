"""Exports: ONNX and TorchScript give what PyTorch gives at sizes never seen in training;
BioImage Model Zoo packages pass bioimageio.core's tests and load back exactly."""

import zipfile

import numpy as np
import pytest

from conftest import make_blobs, tiny
from skunet.export import export_torchscript, from_bioimageio, to_bioimageio

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize(
    "params",
    [
        dict(module__batch_norm=True),
        dict(module__padding="valid", patch_size=20, n_classes=3, target="boundary"),
        dict(module__batch_norm=True, tta="dihedral"),  # flips and transposes in the graph
    ],
    ids=["same-bn", "valid-3class", "dihedral"],
)
def test_onnxruntime_matches_predict_proba(params, tmp_path):
    X, y = make_blobs(4)
    seg = tiny(max_epochs=1, **params).fit(X, y)
    path = seg.export_onnx(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for shape in [(77, 53), (31, 100)]:
        image = rng.random(shape).astype(np.float32)
        (onnx,) = session.run(None, {"image": image[None, None]})
        torch_p = seg.set_params(tile_size=512).predict_proba([image])[0]
        assert onnx.shape == (1, *torch_p.shape)
        np.testing.assert_allclose(onnx[0], torch_p, atol=1e-5)
    # the estimator still predicts as before (memory format restored)
    assert seg.predict(X[:1]).shape == (1, 48, 48)
    with pytest.raises(FileExistsError):
        seg.export_onnx(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny percentile-normalised model, calibrated by hand, and its package."""
    pytest.importorskip("bioimageio.core")
    X, y = make_blobs(4)
    seg = tiny(max_epochs=1, module__batch_norm=True, normalize="percentile").fit(X, y)
    seg.instance_params_ = {"threshold": 0.4, "split": None}
    path = tmp_path_factory.mktemp("zoo") / "blobs.zip"
    return seg, to_bioimageio(seg, path, authors=["A. Tester"], tags=["blobs"]), X


class TestBioImageIO:
    """BioImage Model Zoo packages: bioimageio.core's test_model passes for every weight
    format of the zip, and the package loads back into the same segmenter."""

    @pytest.mark.parametrize("weight_format", ["pytorch_state_dict", "torchscript", "onnx"])
    def test_package_passes_test_model(self, exported, weight_format):
        from bioimageio.core import test_model

        summary = test_model(exported[1], weight_format=weight_format)
        assert summary.status == "passed", summary.format()

    def test_round_trip_is_exact(self, exported):
        seg, path, X = exported
        back = from_bioimageio(path)
        np.testing.assert_allclose(back.predict_proba(X), seg.predict_proba(X), atol=1e-5)
        assert back.instance_params_ == seg.instance_params_
        assert back.get_params()["normalize"] == "percentile"
        # the command line and the napari widget open a package like a model file
        from skunet.pretrained import open_model

        np.testing.assert_allclose(
            open_model(path).predict_proba(X), seg.predict_proba(X), atol=1e-5
        )

    def test_description_carries_the_decoder_and_card(self, exported):
        from bioimageio.spec import load_model_description

        descr = load_model_description(exported[1])
        assert descr.config.model_extra["skunet"]["instances"] == {
            "decoder": "label_components",
            "threshold": 0.4,
            "split": None,
        }
        assert [a.name for a in descr.authors] == ["A. Tester"]
        assert {"skunet", "blobs"} <= set(descr.tags)
        (inp,) = descr.inputs
        assert inp.preprocessing[-1].id in ("scale_range", "ensure_dtype")
        assert [p.id for p in inp.preprocessing if p.id != "ensure_dtype"] == ["scale_range"]
        assert descr.outputs[0].axes[-1].halo == 4
        assert set(descr.weights.model_fields_set) >= {"pytorch_state_dict", "torchscript", "onnx"}

    def test_a_failing_package_is_not_written(self, tmp_path, monkeypatch):
        """The gate is real: TorchScript weights of another network fail test_model."""
        pytest.importorskip("bioimageio.core")
        import skunet.export.zoo as zoo

        X, y = make_blobs(2)
        seg = tiny(max_epochs=1).fit(X, y)
        other = tiny(max_epochs=1, random_state=1).fit(X, y)
        monkeypatch.setattr(
            zoo, "export_torchscript", lambda _, path: export_torchscript(other, path)
        )
        path = tmp_path / "broken.zip"
        with pytest.raises(ValueError, match=r"failed .* test_model for torchscript"):
            to_bioimageio(seg, path, authors=["x"], weight_formats=("torchscript",))
        assert list(tmp_path.iterdir()) == []

    def test_integer_input_of_a_three_channel_model(self, tmp_path):
        """Without normalize, uint8 images are divided by 255 inside the package."""
        pytest.importorskip("bioimageio.core")
        from bioimageio.core import test_model

        X, y = make_blobs(3, channels=3)
        X = [(np.clip(x, 0, 1) * 255).astype(np.uint8) for x in X]
        seg = tiny(max_epochs=1).fit(X, y)
        image = np.pad(X[0], ((0, 16), (0, 16), (0, 0)), mode="reflect")
        path = to_bioimageio(
            seg,
            tmp_path / "rgb.zip",
            authors=["x"],
            test_image=image,
            input_dtype="uint8",
            weight_formats=(),
            test=False,
        )
        assert test_model(path, weight_format="pytorch_state_dict").status == "passed"
        back = from_bioimageio(path)
        np.testing.assert_allclose(back.predict_proba(X[:1]), seg.predict_proba(X[:1]), atol=1e-5)

    def test_bad_input(self, exported, tmp_path):
        pytest.importorskip("bioimageio.core")
        from sklearn.exceptions import NotFittedError

        seg, path, _ = exported
        with pytest.raises(NotFittedError):
            to_bioimageio(tiny(), tmp_path / "m.zip", authors=["x"])
        with pytest.raises(ValueError, match=r"\.zip"):
            to_bioimageio(seg, tmp_path / "m.onnx", authors=["x"])
        with pytest.raises(FileExistsError):
            to_bioimageio(seg, path, authors=["x"])
        with pytest.raises(ValueError, match="authors"):
            to_bioimageio(seg, tmp_path / "m.zip")
        with pytest.raises(ValueError, match="weight format"):
            to_bioimageio(seg, tmp_path / "m.zip", authors=["x"], weight_formats=("keras",))
        with pytest.raises(ValueError, match="not a BioImage Model Zoo package"):
            from_bioimageio(__file__)
        other = tmp_path / "other.zip"
        with zipfile.ZipFile(other, "w") as z:
            z.writestr("rdf.yaml", "type: model\nname: other\n")
        with pytest.raises(ValueError, match="not written by skunet"):
            from_bioimageio(other)


@pytest.mark.slow
def test_command_line_packages_the_pretrained_model(tmp_path, capsys):
    """skunet export --model nuclei: the shipped model as a package whose network gives
    the pretrained model's probabilities, and whose instances come back calibrated."""
    pytest.importorskip("bioimageio.core")
    from skunet.cli import main
    from skunet.datasets import load_sample
    from skunet.pretrained import load_model

    out = tmp_path / "nuclei.zip"
    assert main(["export", "--model", "nuclei", str(out)]) == 0  # test_model ran on all three
    assert f"wrote {out}" in capsys.readouterr().out
    X, _ = load_sample("nuclei")
    back, seg = from_bioimageio(out), load_model("nuclei")
    np.testing.assert_allclose(back.predict_proba(X[1:2]), seg.predict_proba(X[1:2]), atol=1e-5)
    assert back.instance_params_ == seg.instance_params_
    # a model file needs its authors
    model = tiny(max_epochs=1).fit(*make_blobs(2)).save(tmp_path / "m.skunet")
    assert main(["export", "--model", str(model), str(tmp_path / "m.zip")]) == 2
    assert "--author" in capsys.readouterr().err
    assert main(["export", "--model", str(model), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(model), str(onnx), "--format", "onnx"]) == 0
    assert onnx.stat().st_size > 0


def test_every_registered_format_writes_through_one_entry(tmp_path, capsys):
    """skunet export --format reads the format registry; a format's options are checked."""
    import torch

    from skunet.cli import main
    from skunet.export import FORMATS, export

    seg = tiny(max_epochs=1).fit(*make_blobs(2))
    model = seg.save(tmp_path / "m.skunet")
    image = np.random.default_rng(0).random((40, 36)).astype(np.float32)
    expected = seg.set_params(tile_size=512).predict_proba([image])[0]
    script = tmp_path / "m.pt"
    assert main(["export", "--model", str(model), str(script), "--format", "torchscript"]) == 0
    graph = torch.jit.load(str(script))
    with torch.no_grad():
        out = graph(torch.from_numpy(image)[None, None])[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert main(["export", "--model", str(model), str(tmp_path / "x.onnx"), "--format", "onnx",
                 "--name", "mine"]) == 2  # fmt: skip
    assert "--name is not an option of --format onnx" in capsys.readouterr().err
    with pytest.raises(ValueError, match="the onnx format takes no option 'authors'"):
        export(seg, tmp_path / "y.onnx", "onnx", authors=["me"])
    with pytest.raises(ValueError, match="unknown export format 'tiff'"):
        export(seg, tmp_path / "y.tif", "tiff")
    assert export(seg, tmp_path / "y.onnx", "onnx").stat().st_size > 0
    assert set(FORMATS) == {"bioimageio", "onnx", "torchscript"}
