"""ONNX export: onnxruntime gives what PyTorch gives, at sizes never seen in training."""

import numpy as np
import pytest

from conftest import make_blobs, tiny

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize(
    "params",
    [
        dict(module__batch_norm=True),
        dict(module__padding="valid", patch_size=20, n_classes=3, target="boundary"),
    ],
    ids=["same-bn", "valid-3class"],
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
