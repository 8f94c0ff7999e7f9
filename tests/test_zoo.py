"""Every model shipped in the package: a complete card, loaded offline, segments images
of its kind, fine-tunes by FINE_TUNING, and serves the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_blobs
from skunet import UNetSegmenter
from skunet.pretrained import fine_tune, list_models, load_model, locate, model_path
from skunet.tasks import get_task

SHIPPED = [c for c in list_models() if (locate(c) or ("",))[0] == "shipped"]
NAMES = sorted({c.name for c in SHIPPED})


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty cache: only what the package holds."""
    monkeypatch.setenv("SKUNET_HOME", str(tmp_path / "home"))


def examples(seg: UNetSegmenter, n: int = 3, size: int = 64) -> tuple[list, list]:
    """Images shaped for ``seg`` (its channels) and masks of its task: instance labels
    (nuclei), classes 0..n_classes-1 (blood cells: the disks' rims cytoplasm, their
    centres nucleus), or 1 = cell / 0 = membrane (EM)."""
    X, labels = make_blobs(n, shapes=[(size, size)], channels=seg.n_channels_in_)
    X = [x[..., 0] if seg.n_channels_in_ == 1 else x for x in X]
    if seg.task == "blood-cells":
        from scipy.ndimage import binary_erosion

        y = [np.where(binary_erosion(m > 0, iterations=2), 2, (m > 0).astype(int)) for m in labels]
    elif seg.task == "em":
        from skimage.segmentation import find_boundaries

        y = [(~find_boundaries(m, mode="thick")).astype(np.uint8) for m in labels]
    else:
        y = labels
    return X, y


def test_the_zoo_has_a_model_for_every_task_it_ships():
    assert "nuclei" in NAMES
    assert len(NAMES) == len(SHIPPED)  # one version of each ships


@pytest.mark.parametrize("card", SHIPPED, ids=lambda c: c.key)
class TestShipped:
    def test_card_is_complete(self, card):
        assert len(card.sha256) == 64 and card.size == model_path(card).stat().st_size
        assert card.licence and card.description and card.limits
        assert " " not in card.licence  # an SPDX id: what the BioImage Model Zoo takes
        data = card.training_data
        assert data["source"] and data["images"] > 0 and data["licence"]
        assert card.figures and card.figures["seconds_per_megapixel"] > 0
        assert card.figures["machine"]
        assert get_task(card.task).name == card.task
        assert json.loads(json.dumps(card.to_dict())) == card.to_dict()

    def test_loads_offline_and_segments_images_of_its_kind(self, card):
        seg = load_model(card.name, tta=False)
        assert seg.pretrained_ == card and seg.task == card.task
        X, _ = examples(seg, n=1)
        labels = seg.predict(X)[0]
        assert labels.shape == X[0].shape[:2] and labels.max() < seg.n_classes
        if seg.predictor_.gives_instances:
            objects = seg.predict_instances(X)[0]
            assert objects.shape == X[0].shape[:2] and objects.dtype.kind in "iu"

    def test_fine_tunes_by_the_recipe(self, card):
        base = load_model(card.name)
        X, y = examples(base)
        seg = fine_tune(card.name, X, y, max_epochs=1, tta=False)
        assert seg.fine_tuned_["base"] == card.key and seg.warm_start
        # an instance model holds one of three images out to calibrate its thresholds
        held = 1 if base.predictor_.gives_instances else 0
        assert (seg.fine_tuned_["held_out"], seg.fine_tuned_["epochs"]) == (held, 1)
        trained = dict(seg.module_.named_parameters())
        moved = [n for n, p in base.module_.named_parameters() if not torch.equal(p, trained[n])]
        assert moved  # it trained from the shipped weights, which stay as they were
        assert load_model(card.name).pretrained_ == card

    def test_a_changed_byte_is_refused(self, card, tmp_path):
        from skunet.pretrained import check_file

        copy = tmp_path / card.file
        data = bytearray(model_path(card).read_bytes())
        data[-100] ^= 0xFF
        copy.write_bytes(bytes(data))
        with pytest.raises(ValueError, match=f"is not the {card.key} model"):
            check_file(copy, card)
        assert dataclasses.replace(card, sha256="0" * 64) != card

    def test_the_command_line_predicts_with_it(self, card, tmp_path, capsys):
        import tifffile

        from skunet.cli import main

        seg = load_model(card.name)
        X, _ = examples(seg, n=1)
        (tmp_path / "in").mkdir()
        tifffile.imwrite(tmp_path / "in" / "a.tif", (np.asarray(X[0]) * 255).astype(np.uint8))
        assert main(["predict", "--model", card.name, str(tmp_path / "in"), "--out",
                     str(tmp_path / "out")]) == 0  # fmt: skip
        assert (tmp_path / "out" / "a.tif").is_file()
        assert "wrote 1" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n != "nuclei"])  # nuclei: test_export
def test_the_command_line_exports_it_to_the_model_zoo(name, tmp_path, capsys):
    """skunet export --model NAME: a BioImage Model Zoo package that passes its own
    test and gives back the model's probabilities and instance settings."""
    pytest.importorskip("bioimageio.core")
    from skunet.cli import main
    from skunet.export import from_bioimageio

    out = tmp_path / f"{name}.zip"
    assert main(["export", "--model", name, str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    back, seg = from_bioimageio(out), load_model(name)
    X, _ = examples(seg, n=1)
    np.testing.assert_allclose(back.predict_proba(X), seg.predict_proba(X), atol=1e-5)
    assert getattr(back, "instance_params_", None) == getattr(seg, "instance_params_", None)


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (DATA / "isbi2012").is_dir(), reason="needs shared/data/isbi2012")
@pytest.mark.skipif("em" not in NAMES, reason="no em model shipped")
def test_the_em_models_cells_are_sane_on_its_training_slices():
    """Out of the box, predict_instances gives cells: on two of the slices it trained on
    they agree with the true cells (V_rand) and number about as many."""
    from skunet.datasets import load_isbi2012
    from skunet.instances import cell_instances
    from skunet.metrics import rand_scores

    X, y = load_isbi2012(DATA / "isbi2012")
    seg = load_model("em")
    cells = seg.predict_instances([X[0], X[14]])
    for image, truth, found in zip([X[0], X[14]], [y[0], y[14]], cells):
        assert found.shape == image.shape and found.dtype.kind in "iu"
        assert rand_scores(truth, found).v_rand > 0.9
        true_cells = cell_instances(truth).max()
        assert 0.7 * true_cells < found.max() < 1.3 * true_cells


@pytest.mark.skipif(not (DATA / "wbc").is_dir(), reason="needs shared/data/wbc")
@pytest.mark.skipif("blood-cells" not in NAMES, reason="no blood-cells model shipped")
def test_the_blood_cell_model_segments_its_own_kind_of_image():
    """On images it trained on (the card's figures are its recipe's cross-validation):
    each image's nucleus inside one cell, Dice close to the card's."""
    from skunet.datasets import load_wbc
    from skunet.metrics import dice_score, whole_dice_score

    X, y = load_wbc(DATA / "wbc")
    pred = load_model("blood-cells").predict(X[:12])
    assert whole_dice_score(y[:12], list(pred)) > 0.97
    assert dice_score(y[:12], list(pred), n_classes=3, average=None)[2] > 0.95
