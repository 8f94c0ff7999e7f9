import json
import os
import pickle
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import make_blobs, tiny
from skunet import UNetSegmenter
from skunet.persistence import FORMAT_VERSION

_STATUS = Path("/proc/self/status")
_SHOWS_UMASK = _STATUS.exists() and "Umask:" in _STATUS.read_text()


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(4, shapes=[(40, 44), (36, 36)])
    seg = tiny(max_epochs=2, n_classes=3, module__batch_norm=True)
    y = [np.minimum(m, 2) for m in y]
    return seg.fit(X, y), X


def rewrite(path, out, metadata=None, tensors=None):
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        data = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(metadata or {})
    data.update(tensors or {})
    save_file(data, str(out), metadata=meta)


class TestSaveLoad:
    def test_round_trip_reproduces_predictions_exactly(self, fitted, tmp_path):
        seg, X = fitted
        path = seg.save(tmp_path / "model.skunet")
        loaded = UNetSegmenter.load(path)
        for a, b in zip(loaded.predict_proba(X), seg.predict_proba(X)):
            np.testing.assert_array_equal(a, b)
        assert loaded.n_classes == 3 and loaded.n_channels_in_ == 1
        assert loaded.classes_.tolist() == [0, 1, 2]
        assert loaded.module__batch_norm is True and loaded.optimizer is torch.optim.Adam
        assert len(loaded.history) == 2
        assert loaded.history[-1, "valid_iou"] == seg.history[-1, "valid_iou"]

    def test_loaded_model_can_train_further(self, fitted, tmp_path):
        seg, X = fitted
        loaded = UNetSegmenter.load(seg.save(tmp_path / "m.skunet"))
        y = [np.minimum(m, 2) for m in make_blobs(4, shapes=[(40, 44), (36, 36)])[1]]
        loaded.partial_fit(X, y)
        assert len(loaded.history) == 4  # two more epochs

    def test_never_overwrites_silently(self, fitted, tmp_path):
        seg, _ = fitted
        path = tmp_path / "model.skunet"
        path.write_bytes(b"precious")
        with pytest.raises(FileExistsError, match="overwrite=True"):
            seg.save(path)
        assert path.read_bytes() == b"precious"
        seg.save(path, overwrite=True)
        assert UNetSegmenter.load(path).n_classes == 3
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.skunet"]

    def test_a_saved_file_is_readable_as_the_umask_allows(self, fitted, tmp_path):
        seg, _ = fitted
        old = os.umask(0o022)
        try:
            path = seg.save(tmp_path / "shared.skunet")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # colleagues can load it
            os.umask(0o077)
            path = seg.save(tmp_path / "private.skunet")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        finally:
            os.umask(old)

    def test_every_atomic_write_gets_the_umasks_mode(self, tmp_path):
        from skunet.persistence import atomic_path

        old = os.umask(0o022)
        try:
            with atomic_path(tmp_path / "weights.safetensors") as tmp:  # as a checkpoint
                os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
            assert stat.S_IMODE(os.stat(tmp_path / "weights.safetensors").st_mode) == 0o644
        finally:
            os.umask(old)

    @pytest.mark.skipif(not _SHOWS_UMASK, reason="the kernel does not show the umask")
    def test_the_umask_is_read_without_setting_it(self, monkeypatch):
        from skunet.persistence import _umask

        old = os.umask(0o027)
        try:
            with monkeypatch.context() as patch:  # setting it would race other threads
                patch.setattr(os, "umask", lambda mask: pytest.fail("umask set"))
                assert _umask() == 0o027
        finally:
            os.umask(old)

    def test_a_missing_folder_is_named(self, fitted, tmp_path):
        seg, _ = fitted
        with pytest.raises(FileNotFoundError, match=r"no folder .*missing.* to write 'm\.skunet'"):
            seg.save(tmp_path / "missing" / "m.skunet")
        assert list(tmp_path.iterdir()) == []

    def test_save_before_fit(self, tmp_path):
        with pytest.raises(Exception, match="not fitted"):
            UNetSegmenter().save(tmp_path / "m.skunet")

    def test_callables_are_listed_not_stored(self, tmp_path):
        X, y = make_blobs(3)
        seg = tiny(max_epochs=1, augment=lambda x, t: (x, t)).fit(X, y)
        path = seg.save(tmp_path / "m.skunet")
        with safe_open(str(path), framework="pt") as f:
            dropped = json.loads(f.metadata()["dropped_params"])
        assert "augment" in dropped
        assert UNetSegmenter.load(path).augment is True  # the default

    def test_augmentation_and_weight_map_loss_are_stored(self, tmp_path):
        from skunet.augment import Augment
        from skunet.losses import WeightMapLoss

        X, y = make_blobs(3)
        aug = Augment(elastic=7.5, noise=0.01)
        seg = tiny(max_epochs=1, augment=aug, criterion=WeightMapLoss, criterion__w0=5.0)
        loaded = UNetSegmenter.load(seg.fit(X, y).save(tmp_path / "m.skunet"))
        assert loaded.augment == aug and loaded.criterion is WeightMapLoss
        assert loaded.criterion_.w0 == 5.0


class TestRefusal:
    def test_pickle_payload_is_refused_without_running(self, tmp_path):
        marker = tmp_path / "pwned"

        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        path = tmp_path / "evil.skunet"
        torch.save({"state": Payload()}, path)  # what a torch.save-based format would load
        with pytest.raises(ValueError, match="not a skunet model file"):
            UNetSegmenter.load(path)
        with pytest.raises(ValueError, match="not a skunet model file"):
            path.write_bytes(pickle.dumps(Payload()))
            UNetSegmenter.load(path)
        assert not marker.exists()

    def test_import_outside_allow_list_is_refused(self, fitted, tmp_path):
        seg, _ = fitted
        path = seg.save(tmp_path / "m.skunet")
        with safe_open(str(path), framework="pt") as f:
            params = json.loads(f.metadata()["params"])
        params["module"] = {"__import__": "os.system"}
        rewrite(path, tmp_path / "evil.skunet", {"params": json.dumps(params)})
        with pytest.raises(ValueError, match=r"refusing to import 'os\.system'"):
            UNetSegmenter.load(tmp_path / "evil.skunet")

    def test_other_format_or_newer_version(self, fitted, tmp_path):
        seg, _ = fitted
        path = seg.save(tmp_path / "m.skunet")
        rewrite(path, tmp_path / "f.skunet", {"format_version": str(FORMAT_VERSION + 1)})
        with pytest.raises(ValueError, match="format 2, written by skunet"):
            UNetSegmenter.load(tmp_path / "f.skunet")
        rewrite(path, tmp_path / "v.skunet", {"skunet_version": "99.0.0"})
        with pytest.raises(ValueError, match="newer than this skunet"):
            UNetSegmenter.load(tmp_path / "v.skunet")

    def test_different_architecture(self, fitted, tmp_path):
        seg, _ = fitted
        path = seg.save(tmp_path / "m.skunet")
        with safe_open(str(path), framework="pt") as f:
            params = json.loads(f.metadata()["params"])
        params["module__base_channels"] = 8
        rewrite(path, tmp_path / "a.skunet", {"params": json.dumps(params)})
        with pytest.raises(ValueError, match=r"different architecture .* mismatched tensor"):
            UNetSegmenter.load(tmp_path / "a.skunet")

    def test_not_a_file_and_garbage(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no model file"):
            UNetSegmenter.load(tmp_path / "missing.skunet")
        bad = tmp_path / "bad.skunet"
        bad.write_bytes(struct.pack("<Q", 10**12) + b"{}")
        with pytest.raises(ValueError, match="not a skunet model file"):
            UNetSegmenter.load(bad)
        other = tmp_path / "other.safetensors"
        save_file({"w": torch.zeros(2)}, str(other))
        with pytest.raises(ValueError, match="not a skunet model"):
            UNetSegmenter.load(other)
