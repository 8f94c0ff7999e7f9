"""Pretrained models: cards, offline resolution, sha256 checks, warm-start fine-tuning."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import sys
import types

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import make_blobs, tiny
from skunet import UNetSegmenter, model_files, pretrained
from skunet.pretrained import (
    FINE_TUNING,
    ModelCard,
    fine_tune,
    get_card,
    list_models,
    load_model,
    locate,
    register_model,
)


def card_for(path, name="toy", version="1.0.0", **extra) -> ModelCard:
    data = path.read_bytes()
    return ModelCard(
        name=name,
        version=version,
        task="nuclei",
        file=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        licence="CC0-1.0",
        training_data={"source": "blobs", "images": 6, "licence": "CC0-1.0"},
        command="tests/test_pretrained.py",
        figures={},
        **extra,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny nuclei model trained well on blobs, saved once; (segmenter, file, data)."""
    X, y = make_blobs(6)
    seg = tiny(task="nuclei", target="distance", n_classes=3, max_epochs=40, lr=1e-2)
    seg.set_params(module__base_channels=8)
    seg.set_params(train_split=None)
    seg.fit(X, y)
    path = seg.save(tmp_path_factory.mktemp("model") / "toy-1.0.0.skunet")
    return seg, path, (X, y)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty SKUNET_HOME and a registry that forgets what a test registers."""
    monkeypatch.setenv("SKUNET_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pretrained, "_REGISTRY", dict(pretrained._REGISTRY))
    return tmp_path / "home" / "models"


def shipped(name: str | None = None) -> list[ModelCard]:
    """The registered cards whose files ship inside the package."""
    return [c for c in list_models(name) if (locate(c) or ("",))[0] == "shipped"]


def cached(trained, home, **extra) -> ModelCard:
    _, path, _ = trained
    home.mkdir(parents=True, exist_ok=True)
    (home / path.name).write_bytes(path.read_bytes())
    return register_model(card_for(path, **extra))


class TestRegistry:
    def test_the_shipped_nuclei_card_is_complete(self):
        card = get_card("nuclei")
        assert card.task == "nuclei" and card.licence and card.command
        assert card.training_data["licence"] == "CC0-1.0"
        assert set(card.figures["ap"]) >= {"0.50", "0.75", "0.90"}
        assert card.figures["seconds_per_megapixel"] > 0
        assert any("bright" in limit for limit in card.limits)

    @pytest.mark.parametrize("card", shipped("nuclei"), ids=lambda c: c.key)
    def test_every_shipped_nuclei_model_segments_the_sample(self, card, monkeypatch, tmp_path):
        from skunet.datasets import load_sample, sample_ids
        from skunet.metrics import match_dataset

        monkeypatch.setenv("SKUNET_HOME", str(tmp_path))  # nothing cached: the shipped file
        X, y = load_sample("nuclei")
        model = load_model(card.key)
        assert model.instance_params_ and model.tta  # calibrated, flips averaged
        assert isinstance(card.training_data["held_out"], list)
        # judged on the sample images it never saw, as its card lists them; a model that
        # trained on every DSB2018 image (held_out []) only on images it trained on
        unseen = card.never_saw(sample_ids("nuclei")) or range(len(X))
        nuclei = model.predict_instances([X[i] for i in unseen])
        assert match_dataset([y[i] for i in unseen], list(nuclei)).accuracy >= 0.6

    def test_a_card_lists_the_images_its_model_never_saw(self):
        split = get_card("nuclei@0.1.0")  # the benchmark's split: its 73 held-out images
        assert len(split.training_data["held_out"]) == split.figures["images"] == 73
        assert split.never_saw(["no such image", split.training_data["held_out"][5]]) == [1]
        everything = dataclasses.replace(split, training_data={"images": 484, "held_out": []})
        assert everything.never_saw(split.training_data["held_out"]) == []

    def test_newest_version_and_pinned_versions(self, trained, home):
        old = cached(trained, home, version="1.0.0")
        new = register_model(card_for(trained[1], version="1.10.0"))
        assert get_card("toy") == new  # 1.10 is newer than 1.9 or 1.0
        assert get_card("toy@1.0.0") == old
        assert [c.version for c in list_models("toy")] == ["1.0.0", "1.10.0"]

    def test_unknown_names_list_the_known_ones(self, trained, home):
        cached(trained, home)
        with pytest.raises(ValueError, match=r"unknown pretrained model 'toyy'.*'toy'"):
            get_card("toyy")
        with pytest.raises(ValueError, match=r"unknown version of 'toy' '9\.9\.9'"):
            get_card("toy@9.9.9")

    def test_a_different_card_under_a_known_key_is_refused(self, trained, home):
        card = cached(trained, home)
        with pytest.raises(ValueError, match="already registered"):
            register_model(card_for(trained[1], description="other"))
        assert register_model(card) is card  # the same card again is fine


class TestLoad:
    def test_cached_model_predicts_like_the_original(self, trained, home):
        seg, _, (X, _) = trained
        cached(trained, home)
        loaded = load_model("toy")
        assert isinstance(loaded, UNetSegmenter) and loaded.pretrained_.name == "toy"
        np.testing.assert_allclose(loaded.predict_proba(X[:2]), seg.predict_proba(X[:2]), atol=1e-6)
        nuclei = loaded.predict_instances(X[:2])
        assert [n.max() for n in nuclei] == [3, 3]  # the three disks of each image
        np.testing.assert_array_equal(nuclei, seg.predict_instances(X[:2]))

    def test_params_override_prediction_settings(self, trained, home):
        cached(trained, home)
        loaded = load_model("toy", tta=True, tile_size=32, device="cpu")
        assert loaded.tta and loaded.tile_size == 32

    @pytest.mark.parametrize("param", ["module__depth", "n_classes", "target", "normalize"])
    def test_params_that_rebuild_the_network_are_refused(self, trained, home, param):
        cached(trained, home)
        with pytest.raises(ValueError, match=f"cannot change {param}"):
            load_model("toy", **{param: 2})

    def test_a_changed_byte_is_refused_before_anything_loads(self, trained, home, monkeypatch):
        card = cached(trained, home)
        data = bytearray((home / card.file).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (home / card.file).write_bytes(bytes(data))
        calls = []
        monkeypatch.setattr(UNetSegmenter, "load", classmethod(lambda *a, **k: calls.append(a)))
        with pytest.raises(ValueError, match=r"is not the toy@1.0.0 model: sha256"):
            load_model("toy")
        assert calls == []

    def test_missing_file_names_the_cache(self, trained, home):
        register_model(card_for(trained[1]))
        with pytest.raises(FileNotFoundError, match="SKUNET_HOME"):
            load_model("toy")

    def test_a_file_copied_under_another_name_is_found_by_its_sha256(
        self, trained, home, monkeypatch
    ):
        card = register_model(card_for(trained[1]))
        home.mkdir(parents=True)
        (home / "other.skunet").write_bytes(b"not a model")  # another file: passed over
        assert locate(card) is None
        (home / "downloaded (1).skunet").write_bytes(trained[1].read_bytes())
        assert locate(card) == ("cached", home / "downloaded (1).skunet")
        hashed = []
        sha256 = model_files._sha256
        monkeypatch.setattr(model_files, "_sha256", lambda p: hashed.append(p) or sha256(p))
        assert load_model("toy").pretrained_ is card
        assert hashed == [home / "downloaded (1).skunet"]  # once, not again to load it

    def test_only_the_newest_version_of_each_model_ships(self):
        newest = {c.name: c for c in list_models()}  # oldest first: the last one stays
        assert {c.key for c in shipped()} == {c.key for c in newest.values()}
        for card in list_models():
            if card not in newest.values():  # superseded: registered, found in the cache
                assert card.sha256 and (locate(card) or ("cached",))[0] == "cached"

    def test_download_goes_through_pooch_into_the_cache(self, trained, home, monkeypatch):
        path = trained[1]
        register_model(card_for(path, url="https://example.org/toy-1.0.0.skunet"))
        seen = {}

        def retrieve(url, known_hash, fname, path):  # what pooch does, without a network
            seen.update(url=url, known_hash=known_hash)
            target = f"{path}/{fname}"
            with open(target, "wb") as f:
                f.write(trained[1].read_bytes())
            return target

        monkeypatch.setitem(sys.modules, "pooch", types.SimpleNamespace(retrieve=retrieve))
        assert load_model("toy").pretrained_.key == "toy@1.0.0"
        assert seen["known_hash"] == f"sha256:{card_for(path).sha256}"
        assert pretrained.model_path("toy", download=False) == home / path.name  # offline now

    def test_without_pooch_the_message_says_what_to_do(self, trained, home, monkeypatch):
        register_model(card_for(trained[1], url="https://example.org/toy.skunet"))
        monkeypatch.setitem(sys.modules, "pooch", None)
        with pytest.raises(ImportError, match=r"pip install pooch.*by hand"):
            load_model("toy")


class TestFineTuning:
    def test_warm_start_continues_from_the_pretrained_weights(self, trained, home):
        cached(trained, home)
        X2, y2 = make_blobs(4, seed=3)
        settings = {**pretrained.FINE_TUNING, "max_epochs": 1, "lr": 1e-5}
        warm = load_model("toy", **settings).fit(X2, y2)
        fresh = load_model("toy", **{**settings, "warm_start": False}).fit(X2, y2)
        # the same epoch from the trained segmenter in memory: the pretrained weights' loss
        in_memory = copy.deepcopy(trained[0]).set_params(**settings)
        in_memory.initialize_callbacks().fit(X2, y2)
        expected = in_memory.history[-1, "train_loss"]
        assert len(warm.history) == len(trained[0].history) + 1  # appended to its history
        assert len(fresh.history) == 1
        assert warm.history[-1, "train_loss"] == pytest.approx(expected, rel=1e-4)
        assert abs(fresh.history[-1, "train_loss"] - expected) > 0.3

    def test_a_time_limit_bounds_fine_tuning_as_documented(self):
        """The shipped model, fine-tuned as docs/pretrained.md says: a TimeLimit added
        with ``callbacks=`` binds the warm start (it has no time_limit of its own)."""
        from skunet.callbacks import TimeLimit
        from skunet.datasets import load_sample

        X, y = load_sample("nuclei")
        limit = TimeLimit(1e-9, sink=None)
        model = load_model("nuclei", **pretrained.FINE_TUNING, callbacks=[("time_limit", limit)])
        before = len(model.history)
        model.fit(X[:2], y[:2])
        assert len(model.history) == before + 1 and limit.stopped_epoch_ == before + 1

    def test_saved_weight_precision(self, trained, tmp_path):
        seg, path, (X, _) = trained
        half = seg.save(tmp_path / "half.skunet", weights="float16")
        with safe_open(str(half), framework="pt") as f:
            dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert torch.float16 in dtypes and torch.float32 not in dtypes
        assert path.stat().st_size - half.stat().st_size > 5000  # half of the weights' bytes
        loaded = UNetSegmenter.load(half)
        np.testing.assert_allclose(loaded.predict_proba(X[:1]), seg.predict_proba(X[:1]), atol=1e-2)
        with pytest.raises(ValueError, match="unknown weights precision 'int8'"):
            seg.save(tmp_path / "bad.skunet", weights="int8")


class TestCommandLine:
    def test_predict_with_a_pretrained_name_writes_label_images(self, trained, home, tmp_path):
        import tifffile

        from skunet.cli import main

        X = trained[2][0]
        cached(trained, home)
        images = tmp_path / "images"
        images.mkdir()
        for i, x in enumerate(X[:2]):
            tifffile.imwrite(images / f"img{i}.tif", x)  # float32, as trained
        assert main(["predict", "--model", "toy", str(images), "--out", str(tmp_path / "o")]) == 0
        labels = tifffile.imread(tmp_path / "o" / "img0.tif")
        assert labels.shape == X[0].shape and labels.max() == 3  # objects, not classes

    def test_models_lists_the_cards(self, trained, home, capsys):
        from skunet.cli import main

        cached(trained, home)
        gone = card_for(trained[1], version="0.9.0")
        register_model(dataclasses.replace(gone, file="gone.skunet", sha256="0" * 64))
        assert main(["models"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"toy@1\.0\.0  nuclei  [\d.]+ MB  cached\n  licence: CC0-1\.0\n", out)
        assert re.search(r"toy@0\.9\.0  nuclei  [\d.]+ MB  not here", out)
        for card in shipped():  # every shipped model with its licence
            assert f"{card.key}  {card.task}" in out and f"licence: {card.licence}" in out
        assert main(["models", "--json"]) == 0
        assert "toy" in [c["name"] for c in json.loads(capsys.readouterr().out)]

    def test_an_unknown_model_names_the_pretrained_ones(self, home, tmp_path, capsys):
        from skunet.cli import main

        code = main(["predict", "--model", "nucle", str(tmp_path), "--out", str(tmp_path)])
        assert code == 2 and "not a pretrained model" in capsys.readouterr().err


def test_every_cards_command_runs_as_written():
    """From the repository: its scripts exist, no temporary or placeholder path, and every
    model file a step reads lies in a folder that an earlier step's --save names."""
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for card in list_models():
        saved: list[str] = []
        for step in card.command.split(" && "):
            words = shlex.split(step)
            assert words[0] == "python" and (root / words[1]).is_file(), (card.key, step)
            bad = [w for w in words if w.startswith(("/", "~")) or w == "DIR"]
            assert not bad, (card.key, bad)
            for flag in ("--save", "--keep"):  # where the training scripts save models
                if flag in words:
                    saved.append(words[words.index(flag) + 1])
            for word in words:
                if word.endswith(".skunet") and not word.startswith("skunet/"):
                    assert any(word.startswith(f"{folder}/") for folder in saved), (card.key, word)


class TestFineTune:
    """skunet.pretrained.fine_tune: the one function behind Python, the command line and
    the napari plugin."""

    @pytest.fixture(scope="class")
    def base(self):
        X, y = make_blobs(4)
        return tiny(target="boundary", n_classes=3, max_epochs=1).fit(X, y)

    def test_a_fitted_segmenter_is_copied_trained_and_calibrated_on_one_held_out(self, base):
        X, y = make_blobs(4, seed=3)
        before = {k: v.clone() for k, v in base.module_.state_dict().items()}
        seg = fine_tune(base, X, y, max_epochs=2)
        assert seg is not base and all(  # the base is untouched
            torch.equal(v, base.module_.state_dict()[k]) for k, v in before.items()
        )
        assert any(not torch.equal(v, seg.module_.state_dict()[k]) for k, v in before.items())
        record = seg.fine_tuned_
        assert record["base"] == "a fitted segmenter" and record["minutes"] is None
        assert (record["images"], record["held_out"], record["epochs"]) == (3, 1, 2)
        assert seg.warm_start and seg.lr == FINE_TUNING["lr"]
        assert set(seg.instance_params_) == {"threshold", "split"}  # calibrated
        # two images: nothing held out, nothing calibrated anew
        two = fine_tune(base, X[:2], y[:2], max_epochs=1)
        assert (two.fine_tuned_["images"], two.fine_tuned_["held_out"]) == (2, 0)

    def test_minutes_bound_the_training_and_the_record_is_saved(self, base, tmp_path):
        X, y = make_blobs(3, seed=5)
        seg = fine_tune(base, X, y, minutes=1e-4, max_epochs=50)
        assert seg.fine_tuned_["epochs"] == 1 and seg.fine_tuned_["minutes"] == 1e-4
        assert seg.max_epochs == 50
        # minutes alone: they bind, not FINE_TUNING's 30 epochs
        assert fine_tune(base, X, y, minutes=1e-4).max_epochs == pretrained.UNTIL_THE_MINUTES
        assert fine_tune(base, X, y, max_epochs=1).max_epochs == 1
        back = UNetSegmenter.load(seg.save(tmp_path / "mine.skunet"))
        assert back.fine_tuned_ == seg.fine_tuned_ and back.instance_params_ == seg.instance_params_
        # a cold fit makes a new network: no longer fine-tuned
        assert not hasattr(back.set_params(warm_start=False, max_epochs=1).fit(X, y), "fine_tuned_")

    def test_one_lazy_image_is_one_image(self, base):
        da = pytest.importorskip("dask.array")
        X, y = make_blobs(1, shapes=[(64, 64)], seed=7)
        seg = fine_tune(base, da.from_array(X[0], chunks=32), da.from_array(y[0], chunks=32))
        assert (seg.fine_tuned_["images"], seg.fine_tuned_["held_out"]) == (1, 0)

    def test_bad_input_is_refused_before_training(self, base):
        X, y = make_blobs(3)
        with pytest.raises(ValueError, match="X has 3 images but y has 2 masks"):
            fine_tune(base, X, y[:2])
        with pytest.raises(FileNotFoundError, match="not a pretrained model"):
            fine_tune("no-such-model", X, y)

    def test_a_new_segmenter_trains_from_scratch_by_its_own_recipe(self):
        X, y = make_blobs(3)
        new = tiny(target="distance", n_classes=3, lr=2e-3)
        seg = fine_tune(new, X, y, max_epochs=2)
        assert seg.fine_tuned_["base"] == "new generic segmenter"
        assert (seg.fine_tuned_["epochs"], seg.fine_tuned_["held_out"]) == (2, 1)
        assert seg.lr == 2e-3 and not seg.warm_start and seg.train_split is None
        assert not hasattr(new, "classes_")  # the given segmenter is not fitted

    def test_partial_masks_teach_only_what_is_annotated(self, base):
        """Cells outside the annotated part (-1) are neither taught as background nor
        scored in the calibration."""
        X, y = make_blobs(3)
        partial = [np.where(np.arange(48)[:, None] < 24, m, -1).astype(np.int32) for m in y]
        seg = fine_tune(base, X, partial, max_epochs=1)
        assert seg.fine_tuned_["held_out"] == 1 and seg.instance_params_ is not None

    @pytest.mark.slow
    def test_a_zoo_model_and_the_command_line(self, tmp_path, capsys):
        import tifffile

        from skunet.cli import main
        from skunet.datasets import load_sample

        X, y = load_sample("nuclei")
        seg = fine_tune("nuclei", X[:2], y[:2], max_epochs=1, tta=False)
        assert seg.fine_tuned_["base"] == get_card("nuclei").key
        assert seg.predict_instances(X[2:3])[0].max() > 5
        for sub in ("images", "masks"):
            (tmp_path / sub).mkdir()
        for i in range(3):
            tifffile.imwrite(tmp_path / "images" / f"n{i}.tif", X[i])
            tifffile.imwrite(tmp_path / "masks" / f"n{i}.tif", y[i])
        out = tmp_path / "mine.skunet"
        args = ["fine-tune", "--model", "nuclei", str(tmp_path / "images"),
                str(tmp_path / "masks"), "--epochs", "1", "--out", str(out)]  # fmt: skip
        assert main(args) == 0
        assert "1 epochs" in capsys.readouterr().out
        assert UNetSegmenter.load(out).fine_tuned_["held_out"] == 1
        assert main(args) == 2  # never over an existing file
        assert "exists" in capsys.readouterr().err
