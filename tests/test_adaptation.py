"""adapt_input: a one-channel model's first convolution folded onto more channels."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_blobs, tiny
from skunet import UNetSegmenter
from skunet.adaptation import CHANNEL_WEIGHTS, adapt_input
from skunet.pretrained import fine_tune


@pytest.fixture(scope="module")
def gray():
    X, y = make_blobs(4, shapes=[(48, 48)], seed=3)
    return tiny(n_classes=2, train_split=None).fit(X, y), X, y


def test_the_adapted_model_answers_on_the_projection_as_the_base_on_gray(gray):
    """Channels whose weighted sum is the gray image give the base model's output."""
    seg, X, _ = gray
    weights = (0.5, 0.2, 0.3)
    rgb = adapt_input(seg, weights)
    assert rgb.n_channels_in_ == 3 and seg.n_channels_in_ == 1  # the base is not changed
    image = X[0].astype(np.float32)
    stacked = np.stack([image, image, image], axis=-1)  # 0.5 x + 0.2 x + 0.3 x = x
    np.testing.assert_allclose(
        rgb.predict_proba([stacked])[0], seg.predict_proba([image])[0], atol=1e-5
    )
    skewed = np.stack([image, 0 * image, 0 * image], axis=-1)  # 0.5 x: another answer
    assert not np.allclose(rgb.predict_proba([skewed])[0], seg.predict_proba([image])[0])


def test_the_adapted_model_starts_a_new_history_and_records_its_base(gray, tmp_path):
    seg, X, y = gray
    rgb = adapt_input(seg, "haematoxylin")
    assert len(seg.history) == 2 and len(rgb.history) == 0
    assert rgb.adapted_ == {
        "base": "a fitted segmenter",
        "channels": "haematoxylin",
        "weights": list(CHANNEL_WEIGHTS["haematoxylin"]),
    }
    loaded = UNetSegmenter.load(rgb.save(tmp_path / "rgb.skunet"))
    assert loaded.adapted_ == rgb.adapted_ and loaded.n_channels_in_ == 3
    colour = [np.stack([x, x, x], axis=-1) for x in X]
    rgb.set_params(warm_start=True, max_epochs=1)
    rgb.fit(colour, y)  # trains on RGB from the adapted weights, the record kept
    assert len(rgb.history) == 1 and rgb.adapted_["channels"] == "haematoxylin"
    rgb.set_params(warm_start=False)
    rgb.fit(colour, y)  # a new network: no longer the adapted one
    assert not hasattr(rgb, "adapted_")


def test_haematoxylin_maps_white_to_minus_one_and_black_to_zero():
    """Linearised colour deconvolution: dark purple nuclei brighter than pink eosin."""
    w = np.array(CHANNEL_WEIGHTS["haematoxylin"])
    assert np.isclose(w.sum(), -1.0)
    nucleus, eosin = np.array([0.25, 0.1, 0.5]), np.array([0.9, 0.5, 0.8])
    assert w @ nucleus > w @ eosin > w @ np.ones(3)


@pytest.mark.parametrize(
    ("channels", "message"),
    [("eosin", "not one of"), ((1.0, np.nan), "finite weights"), ((), "finite weights")],
)
def test_bad_channels_are_named(gray, channels, message):
    with pytest.raises(ValueError, match=message):
        adapt_input(gray[0], channels)


def test_only_a_fitted_one_channel_model_is_adapted(gray):
    with pytest.raises(ValueError, match="fitted segmenter"):
        adapt_input(tiny(), "haematoxylin")
    rgb = adapt_input(gray[0], "haematoxylin")
    with pytest.raises(ValueError, match="takes 3"):
        adapt_input(rgb, "haematoxylin")


def test_a_pretrained_model_is_adapted_by_name():
    rgb = adapt_input("nuclei", "haematoxylin")
    assert rgb.adapted_["base"].startswith("nuclei@") and not hasattr(rgb, "pretrained_")
    assert rgb.module_.state_dict()["down.0.0.weight"].shape[1] == 3


def test_fine_tune_trains_an_adapted_model_on_colour_images(gray):
    """What an H&E user without a model of their own does: the gray nuclei model adapted,
    then fine-tuned on a few RGB tiles; the record names the base and the adaptation."""
    seg, X, y = gray
    colour = [np.stack([0.2 * x, 0.5 * x, x], axis=-1) for x in X]
    tuned = fine_tune(adapt_input(seg, "haematoxylin"), colour, y, max_epochs=1)
    assert tuned.fine_tuned_["base"] == "a fitted segmenter, adapted to haematoxylin"
    assert tuned.fine_tuned_["images"] + tuned.fine_tuned_["held_out"] == 4
    assert tuned.adapted_["channels"] == "haematoxylin"
    assert tuned.predict(colour[:1])[0].shape == X[0].shape


def test_a_gray_model_warm_started_on_colour_images_says_how_to_adapt_it(gray):
    seg, X, y = gray
    colour = [np.stack([x, x, x], axis=-1) for x in X]
    with pytest.raises(ValueError, match=r"1-channel images; X\[0\] has 3; .*adapt_input"):
        fine_tune(seg, colour, y, max_epochs=1)


def test_the_command_line_fine_tunes_a_gray_model_adapted_to_colour(gray, tmp_path, capsys):
    import tifffile

    from skunet.cli import main

    seg, X, y = gray
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i, (x, m) in enumerate(zip(X, y)):  # dark nuclei on a light, pink-ish field
        rgb = np.stack([1 - 0.4 * x, 1 - 0.8 * x, 1 - 0.3 * x], axis=-1).clip(0, 1)
        tifffile.imwrite(tmp_path / "images" / f"t{i}.tif", (255 * rgb).astype(np.uint8))
        tifffile.imwrite(tmp_path / "masks" / f"t{i}.tif", m.astype(np.uint16))
    model, out = seg.save(tmp_path / "gray.skunet"), tmp_path / "rgb.skunet"
    args = ["fine-tune", "--model", str(model), str(tmp_path / "images"),
            str(tmp_path / "masks"), "--epochs", "1", "--out", str(out)]  # fmt: skip
    assert main([*args, "--adapt", "haematoxylin"]) == 0
    assert "adapted to haematoxylin on 4 images" in capsys.readouterr().err
    tuned = UNetSegmenter.load(out)
    assert tuned.n_channels_in_ == 3 and tuned.adapted_["channels"] == "haematoxylin"
    assert tuned.fine_tuned_["base"] == f"{model}, adapted to haematoxylin"
    # without --adapt the gray model reads the colour images as gray
    assert main([*args[:-1], str(tmp_path / "gray-tuned.skunet")]) == 0
    assert UNetSegmenter.load(tmp_path / "gray-tuned.skunet").n_channels_in_ == 1
