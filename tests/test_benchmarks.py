"""The parts of the benchmark scripts that decide what a record says: which slices the EM
benchmark holds out for calibration and how the decoder-grid script judges calibration
rules (it reads tables, so it is tested on made-up ones)."""

import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import dic_hela
import em
import em_decoder_grid as grid
import em_decoders
import prediction_speed
from _record import ISA_CAPS, command, machine


def test_calibration_slices_are_the_ones_the_em_docs_name():
    from sklearn.model_selection import KFold

    folds = list(KFold(5).split(np.arange(30)))
    three = [em.calibration_slices(train, 3) for train, _ in folds]
    assert three == [[13, 21, 29], [13, 21, 29], [7, 21, 29], [7, 15, 29], [7, 15, 23]]
    five = [em.calibration_slices(train, 5) for train, _ in folds]
    assert five == [
        [10, 15, 19, 24, 29],
        [4, 15, 19, 24, 29],
        [4, 9, 19, 24, 29],
        [4, 9, 13, 24, 29],
        [4, 9, 13, 18, 23],
    ]
    for (train, _), h in zip(folds * 2, three + five):
        assert len(set(h)) == len(h) and set(h) <= set(train)


def tables(calibration: dict, test: dict, protocol: float) -> dict:
    """A fold whose every grid cell scores 0.9 except the given (threshold, split) cells,
    for three calibration and two test slices."""
    shape = (len(grid.THRESHOLDS), len(grid.SPLITS))

    def table(cells: dict, n: int) -> list:
        t = np.full((n, *shape), 0.9)
        for (threshold, split), values in cells.items():
            t[:, grid.THRESHOLDS.index(threshold), grid.SPLITS.index(split)] = values
        return t.tolist()

    return {
        "calibration": table(calibration, 3),
        "test": table(test, 2),
        "protocol_v_rand": protocol,
    }


def test_calibration_chooses_within_the_package_grid_and_keeps_the_defaults_on_ties():
    score = np.zeros((len(grid.THRESHOLDS), len(grid.SPLITS)))
    score[grid.THRESHOLDS.index(0.1), grid.SPLITS.index(0.85)] = 1.0  # not in the grid
    score[grid.THRESHOLDS.index(0.7), grid.SPLITS.index(0.93)] = 1.0  # nor this
    assert grid.choose(score) == (
        grid.THRESHOLDS.index(0.5),
        grid.SPLITS.index(0.85),
    )  # the defaults
    score[grid.THRESHOLDS.index(0.7), grid.SPLITS.index(0.9)] = 0.5
    assert grid.choose(score) == (grid.THRESHOLDS.index(0.7), grid.SPLITS.index(0.9))


def test_rules_are_judged_against_the_protocol_on_the_test_slices():
    # the best mean on the calibration slices is (0.7, 0.9), which fails on the test
    # slices; (0.6, 0.8) is never bad on a calibration slice and holds on the test
    fold = tables(
        {(0.7, 0.9): [1.0, 1.0, 0.85], (0.6, 0.8): [0.95, 0.95, 0.95]},
        {(0.7, 0.9): [0.8, 0.8], (0.6, 0.8): [0.96, 0.96]},
        protocol=0.95,
    )
    judged = grid.judge({"0": fold, "1": fold})
    mean = judged["rules"]["best mean (the package until 2026-12-02)"]
    assert [f["pair"] for f in mean["folds"]] == ["0.7|0.9", "0.7|0.9"]
    assert mean["mean_minus_protocol"] == pytest.approx(-0.15)
    worst = judged["rules"]["best worst slice"]
    assert [f["pair"] for f in worst["folds"]] == ["0.6|0.8", "0.6|0.8"]
    assert worst["every_fold_within_0.005"]
    defaults = judged["rules"]["the defaults (0.5, 0.85), no calibration"]
    assert defaults["folds"][0]["v_rand"] == pytest.approx(0.9)
    # each fold's rule is chosen on the other folds: here both prefer the worst slice
    # (or a rule that chose the same pair)
    held_out = judged["rule_chosen_on_the_other_folds"]
    assert [f["pair"] for f in held_out["folds"]] == ["0.6|0.8", "0.6|0.8"]


def test_a_fold_does_not_choose_its_own_rule():
    good = tables({(0.6, 0.8): [0.95] * 3}, {(0.6, 0.8): [0.96] * 2}, protocol=0.95)
    # on this fold the calibration's best mean fails on the test slices, but on the
    # other fold it is the best rule, so this fold is judged with it
    bad = tables(
        {(0.7, 0.9): [1.0, 1.0, 0.85], (0.6, 0.8): [0.95] * 3},
        {(0.7, 0.9): [0.8, 0.8], (0.6, 0.8): [0.96] * 2},
        protocol=0.95,
    )
    judged = grid.judge({"0": bad, "1": good})
    chosen = judged["rule_chosen_on_the_other_folds"]["folds"][0]
    on_fold_1 = {n: r["folds"][1]["minus_protocol"] for n, r in judged["rules"].items()}
    assert on_fold_1[chosen["rule"]] == max(on_fold_1.values())


def test_the_package_rule_takes_the_highest_threshold_near_the_best_mean():
    from skunet.calibration import SEED_TOLERANCE

    # best mean (0.5, 0.75): 0.96; (0.8, 0.85) is 0.005 below it, (0.9, 0.85) 0.02 below
    fold = tables(
        {(0.5, 0.75): [0.96] * 3, (0.8, 0.85): [0.955] * 3, (0.9, 0.85): [0.94] * 3},
        {(0.5, 0.75): [0.9] * 2, (0.8, 0.85): [0.97] * 2},
        protocol=0.96,
    )
    judged = grid.judge({"0": fold})["rules"]
    package = judged[
        f"the highest threshold within {SEED_TOLERANCE:g} of the best mean (the package)"
    ]
    assert package["folds"][0]["pair"] == "0.8|0.85"
    assert package["folds"][0]["minus_protocol"] == pytest.approx(0.01)
    assert judged["best mean (the package until 2026-12-02)"]["folds"][0]["pair"] == "0.5|0.75"


def isbi_stack(root: Path, n: int = 10, size: int = 80) -> None:
    """``n`` EM-like slices with their labels, as the challenge's two TIFF stacks."""
    import tifffile

    from conftest import membrane_cells

    rng = np.random.default_rng(0)
    labels = np.stack([membrane_cells((size, size), step=12, seed=i) for i in range(n)])
    volume = 60 + 120 * labels + rng.normal(0, 15, labels.shape)
    tifffile.imwrite(root / "train-volume.tif", np.clip(volume, 0, 255).astype(np.uint8))
    tifffile.imwrite(root / "train-labels.tif", (255 * labels).astype(np.uint8))


def test_the_em_benchmark_records_a_fold_and_scores_its_kept_network_again(tmp_path, monkeypatch):
    import json

    isbi_stack(tmp_path)
    out, keep = tmp_path / "results" / "em.json", tmp_path / "nets"
    common = ["--config", "smoke", "--folds", "1", "--data", str(tmp_path), "--out", str(out)]
    common += ["--calibration-slices", "2", "--keep", str(keep), "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["em.py", *common])
    em.main()
    first = json.loads(out.read_text())["smoke, folds [1]"]
    assert first["command"].startswith("python em.py --config smoke")
    assert not first["complete_cv"] and (out.parent / first["picture"]).is_file()
    fold = first["folds"][0]
    assert set(em.SCORES) <= set(fold) and set(em.SCORES) <= set(first["summary"])
    # fold 1 of 10 slices tests slices 2-3; two training slices calibrate, held out
    assert fold["calibration_slices"] == [5, 9] and fold["reused"] is None
    assert set(fold["variants"]) == {"plain", "tta"} and 0 <= fold["pixel_error"] <= 1
    assert (keep / "em_smoke_fold1.skunet").is_file()

    # --reuse scores the kept network without training it: the same figures
    monkeypatch.setattr(sys, "argv", ["em.py", *common, "--reuse"])
    em.main()
    again = json.loads(out.read_text())["smoke, folds [1]"]["folds"][0]
    assert again["reused"] == str(keep / "em_smoke_fold1.skunet")
    assert again["epochs_run"] == fold["epochs_run"] == 1
    for score in ("v_rand", "v_rand_instances", "pixel_error_at_v_rand_threshold"):
        assert again[score] == pytest.approx(fold[score])


def test_the_em_post_processings_keep_the_borders_and_what_connects_to_them():
    from scipy import ndimage as ndi

    # two cells split by a 3-px membrane at columns 19-21; a dark blob inside the left cell
    cells = np.full((40, 40), 0.9)
    cells[:, 19:22] = 0.05
    cells[8:12, 6:10] = 0.2
    instances = np.where(np.arange(40) < 20, 1, 2)[None, :].repeat(40, axis=0)
    maps = em_decoders.post_processed(cells, instances)
    assert np.array_equal(maps["as predicted"], cells)
    for name in ("band 2 px", "connected", "band 2 px, c**0.2 farther"):
        membrane = maps[name] <= 0.5
        assert membrane[:, 19:22].all(), name  # the membrane stays whole
        assert not membrane[8:12, 6:10].any(), name  # the blob is gone
    assert (maps["band 2 px"][:, :16] == 1).all()
    for t in (0.1, 0.5, 0.95):  # dilating the map erodes the membranes at every threshold
        eroded = ndi.binary_erosion(cells <= t, np.ones((3, 3)), border_value=1)
        assert np.array_equal(maps["dilated"] <= t, eroded)


def test_the_prediction_speed_benchmark_records_both_tilings(tmp_path, monkeypatch):
    """benchmarks/prediction_speed.py end to end on a small image: every run timed, the
    ratios to the bare network, the tile it chose; and the mosaics it scores hold the
    crops' objects, renumbered."""
    import json

    out = tmp_path / "speed.json"
    argv = ["prediction_speed.py", "--size", "320", "--repeats", "1", "--key", "t"]
    argv += ["--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    prediction_speed.main()
    record = json.loads(out.read_text())["t"]
    assert record["image"] == [320, 320] and record["model"].startswith("nuclei@")
    f32 = record["float32"]
    assert f32["network_x_network"] == 1.0 and f32["predict_proba_s_per_mp"] > 0
    assert {"blockwise_instances_s_per_mp", "predict_proba_previous_tile_s_per_mp"} <= set(f32)
    images = [np.full((300, 300), 7, np.uint8)]
    labels = [np.zeros((300, 300), np.uint16)]
    labels[0][10:20, 10:20], labels[0][50:60, 50:60] = 5, 9
    image, truth = prediction_speed.mosaic(images, labels, 512, seed=0)
    assert image.shape == truth.shape == (512, 512) and (image[:256, :256] == 7).all()
    assert len(np.unique(truth)) == 1 + 2 * 4  # two objects in each of the 4 crops


def test_a_record_says_how_to_run_it_from_the_root_and_which_instructions_were_capped(
    monkeypatch,
):
    """Run from ``benchmarks/``, the command still names paths from the repository's root;
    with oneDNN / MKL / ATen capped to AVX2 the record says so and the command sets them."""
    root = Path(__file__).parents[1]
    monkeypatch.chdir(root / "benchmarks")
    argv = ["he_nuclei.py", "--data", "../tests", "--out=results/new.json", "--name", "a b"]
    monkeypatch.setattr(sys, "argv", argv)
    for name in ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    plain = command()
    out = "--out=benchmarks/results/new.json"
    assert plain == f"python benchmarks/he_nuclei.py --data tests {out} --name 'a b'"
    assert "instruction_caps" not in machine()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert command() == "ONEDNN_MAX_CPU_ISA=AVX2 " + plain
    capped = machine()
    assert capped["instruction_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert capped["instructions"].endswith(" capped to AVX2")


def test_dic_hela_judges_frames_away_from_every_trained_one(tmp_path):
    """Test frames lie at least 4 frames from every annotated frame (neighbours are
    near copies), no split trains on its own test frames, and nothing names sequence 02."""
    annotated = {int(name[1:]) for name in dic_hela.TRAIN_ORDER}
    for train, test in dic_hela.SPLITS.values():
        assert set(train) <= set(dic_hela.TRAIN_ORDER) and not set(train) & set(test)
        assert all(abs(int(t[1:]) - a) >= 4 for t in test for a in annotated)
    source = Path(dic_hela.__file__).read_text()
    assert "/02" not in source and "02_" not in source
    records = {
        "nuclei_k1_2min": {"base": "nuclei", "k": 1, "minutes": 2.0, "SEG": 0.61234, "epochs": 9},
        "scratch_k1_2min": {"base": "scratch", "k": 1, "minutes": 2.0, "SEG": 0.5, "epochs": 3},
        "nuclei_k1_5min": {"base": "nuclei", "k": 1, "minutes": 5.0, "SEG": 0.7, "epochs": 20},
    }
    (tmp_path / "r.json").write_text(__import__("json").dumps(records))
    lines = dic_hela.table(tmp_path / "r.json").splitlines()
    assert lines[0] == "| base | k frames | 2 min | 5 min |"
    assert lines[2] == "| nuclei | 1 | 0.612 (9 ep) | 0.700 (20 ep) |"
    assert lines[3] == "| scratch | 1 | 0.500 (3 ep) |  |"


def shipping(monkeypatch, tmp_path, card, model, data, *options):
    """ship.py's command line for ``model`` as ``card``, writing under ``tmp_path`` and
    reading the card's dataset from ``tmp_path / data``; returns the argv it set."""
    import ship

    monkeypatch.setattr(ship, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(ship, "SHIP_DIR", tmp_path / "models")
    monkeypatch.setitem(ship.CARDS[card], "data", tmp_path / data)
    argv = ["ship.py", model, "--card", card, *options]
    monkeypatch.setattr(sys, "argv", argv)
    return argv


def test_an_em_model_to_ship_is_trained_on_every_slice_and_shipped_with_its_cv_card(
    tmp_path, monkeypatch
):
    """em.py --all-slices trains on every slice less the calibration ones and saves the
    calibrated model; ship.py writes it with a card carrying the complete CV's figures,
    checked by sha256, and refuses a partial cross-validation."""
    import json

    import ship

    from skunet import UNetSegmenter
    from skunet.model_cards import ModelCard
    from skunet.pretrained import check_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "isbi").mkdir()
    isbi_stack(tmp_path / "isbi")
    common = ["--config", "smoke", "--data", "isbi", "--calibration-slices", "2", "--out",
              "results/em.json", "--device", "cpu"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["em.py", *common, "--folds", "0"])
    em.main()
    monkeypatch.setattr(sys, "argv", ["em.py", *common, "--all-slices", "--keep", "runs/em"])
    em.main()
    model = UNetSegmenter.load(tmp_path / "runs" / "em" / "em_smoke_all.skunet")
    assert model.instance_params_ is not None and len(model.history) == 1
    with pytest.raises(SystemExit, match="would overwrite"):  # refused before training
        em.main()

    argv = shipping(monkeypatch, tmp_path, "em", "runs/em/em_smoke_all.skunet", "isbi",
                    "--version", "0.0.1", "--figures-from", "smoke, folds [0]",
                    "--timed-images", "2", "--training-command",
                    "python benchmarks/em.py --config smoke")  # fmt: skip
    with pytest.raises(SystemExit, match="no complete cross-validation"):
        ship.main()  # one fold is not the recipe's cross-validation
    monkeypatch.setattr(sys, "argv", ["em.py", *common])
    em.main()
    monkeypatch.setattr(sys, "argv", [*argv[:7], "smoke", *argv[8:]])
    ship.main()
    entry = json.loads((tmp_path / "models" / "models.json").read_text())[0]
    card = ModelCard(**{**entry, "limits": tuple(entry["limits"])})
    assert card.key == "em@0.0.1" and card.task == "em" and card.licence == "CC-BY-NC-4.0"
    check_file(tmp_path / "models" / "em-0.0.1.skunet", card)
    assert card.figures["folds"] == 5 and set(card.figures) >= {"v_rand", "pixel_error"}
    assert card.figures["seconds_per_megapixel"] > 0 and card.training_data["held_out"] == []
    assert card.command.startswith("python benchmarks/em.py --config smoke && ")
    assert "--training-command" not in card.command and str(tmp_path) not in card.command


def test_an_h_and_e_model_trained_on_every_tile_ships_with_its_splits_figures(
    tmp_path, monkeypatch
):
    """he_nuclei.py --all-images, then ship.py with the split record's figures: the card
    holds nothing out, names the record, and a training command of another recipe is
    refused before anything is written."""
    import json

    import nuclei
    import ship
    import tifffile

    from conftest import make_blobs

    X, y = make_blobs(7, shapes=[(64, 64)], channels=3, seed=2)
    for i, (image, mask) in enumerate(zip(X, y)):
        for folder, array in (("images", image), ("masks", mask)):
            (tmp_path / "he" / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp_path / "he" / folder / f"t{i}.tif", array)
    monkeypatch.chdir(tmp_path)
    data = nuclei.Dataset("he", tmp_path, tmp_path / "results" / "he_nuclei.json",
                          lambda _: (X, y))  # fmt: skip
    recipe = ["--device", "cpu"]
    for setting in ("module__base_channels=4", "module__depth=2", "patch_size=32", "max_epochs=1"):
        recipe += ["--set", setting]
    split_run = ["he_nuclei.py", *recipe, "--name", "split"]
    monkeypatch.setattr(sys, "argv", split_run)
    nuclei.main(dataset=data)
    all_run = ["he_nuclei.py", "--all-images", *recipe, "--save", "runs", "--name", "all"]
    monkeypatch.setattr(sys, "argv", all_run)
    nuclei.main(dataset=data)
    training = f"python {shlex.join(split_run)} && python {shlex.join(all_run)}"
    options = ["--version", "9.9.9", "--figures-from", "split", "--timed-images", "1"]
    other = training.replace("patch_size=32", "patch_size=48")
    shipping(monkeypatch, tmp_path, "nuclei-he", "runs/all-distance.skunet", "he", *options,
             "--training-command", other)  # fmt: skip
    with pytest.raises(SystemExit, match="not the recipe of record 'split'"):
        ship.main()
    assert not (tmp_path / "models").exists()
    shipping(monkeypatch, tmp_path, "nuclei-he", "runs/all-distance.skunet", "he", *options,
             "--training-command", training)  # fmt: skip
    ship.main()
    card = json.loads((tmp_path / "models" / "models.json").read_text())[0]
    assert card["training_data"]["held_out"] == [] and card["training_data"]["images"] == 45
    assert "record 'split'" in card["training_data"]["note"]
    assert "were part of this model's training" in card["training_data"]["note"]
    assert card["figures"]["images"] == 1 and card["figures"]["record"] == "split"
    assert card["command"].startswith(training + " && python benchmarks/ship.py ")


def test_a_model_trained_on_images_its_card_does_not_name_is_refused(monkeypatch):
    """ship.py: a split record or an every-image command with --train-also images would
    ship a card whose training data misses them."""
    import ship

    record = {"command": "python benchmarks/he_nuclei.py --train-also ../data/he-dsb",
              "held_out_images": 7, "train_also": ["../data/he-dsb"]}  # fmt: skip
    monkeypatch.setattr(
        ship, "load", lambda path: {"r": record, "plain": {**record, "train_also": None}}
    )
    with pytest.raises(SystemExit, match="--train-also images too"):
        ship.held_out_figures("nuclei-he", "r")
    every = ["benchmarks/he_nuclei.py", "--all-images", "--train-also", "../data/he-dsb"]
    with pytest.raises(SystemExit, match="--train-also images too"):
        ship.held_out_figures("nuclei-he", "plain", every)
    every = ["benchmarks/he_nuclei.py", "--all-images", "--train-also=../data/he-dsb"]
    with pytest.raises(SystemExit, match="--train-also images too"):
        ship.held_out_figures("nuclei-he", "plain", every)


def test_h_and_e_labels_from_colour_masks_and_polygons():
    """he_data.py: one nucleus per colour's connected piece, outline fragments dropped,
    overlaps' lenses merged; MoNuSeg's XML polygons filled, one label each."""
    import he_data

    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[2:8, 2:8] = (200, 10, 10)
    rgb[20:27, 20:27] = (200, 10, 10)  # the same colour elsewhere: another nucleus
    rgb[2:8, 12:18] = (10, 200, 10)
    rgb[15:17, 2:4] = (10, 10, 200)  # 4 px: a fragment of an outline
    labels = he_data.colour_instances(rgb)
    assert labels.max() == 3 and labels[15, 2] == 0
    assert len({labels[4, 4], labels[22, 22], labels[4, 14]}) == 3
    # two see-through nuclei overlap: the blended lens joins one of them, no third one
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[2:14, 2:14] = (200, 10, 10)
    rgb[8:20, 8:20] = (10, 200, 10)
    rgb[8:14, 8:14] = (105, 105, 10)  # 36 px of a third colour, bounded by the two
    labels = he_data.colour_instances(rgb)
    assert labels.max() == 2 and labels[10, 10] in {labels[3, 3], labels[18, 18]}
    xml = b"""<Annotations><Annotation><Regions>
      <Region Id="1"><Vertices><Vertex X="2" Y="2"/><Vertex X="9" Y="2"/>
        <Vertex X="9" Y="9"/><Vertex X="2" Y="9"/></Vertices></Region>
      <Region Id="2"><Vertices><Vertex X="15" Y="15"/><Vertex X="25" Y="15"/>
        <Vertex X="20" Y="25"/></Vertices></Region>
    </Regions></Annotation></Annotations>"""
    labels = he_data.xml_instances(xml, (30, 30))
    assert labels.max() == 2 and labels[5, 5] == 1 and labels[17, 20] == 2 and labels[0, 0] == 0


def test_dsb_images_are_packed_into_mosaics_with_their_own_nuclei():
    """he_data.py: images packed row by row into mosaics, each image's pixels and
    nuclei where its record says, numbered apart, the gaps -1 (not annotated)."""
    import he_data

    rng = np.random.default_rng(0)
    items = []
    for k, (h, w) in enumerate([(30, 40), (50, 30), (20, 20), (30, 60), (10, 10)]):
        image = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
        labels = np.zeros((h, w), np.int32)
        labels[2:6, 2:6], labels[-6:-2, -6:-2] = 1, 2
        items.append((f"i{k}", image, labels, {"factor": 1.0}))
    out = he_data.mosaics(items, side=80)
    assert len(out) > 1 and all(m[1].shape[1] <= 80 and m[1].shape[0] <= 80 for m in out)
    members = 0
    for _, image, labels, info in out:
        seen = set()
        for member in info["members"]:
            (top, left), (h, w) = member["at"], member["shape"]
            original = next(item for item in items if item[0] == member["name"])
            assert np.array_equal(image[top : top + h, left : left + w], original[1])
            ids = set(np.unique(labels[top : top + h, left : left + w])) - {0}
            assert len(ids) == 2 and not ids & seen
            seen |= ids
            members += 1
        covered = sum(h * w for h, w in (m["shape"] for m in info["members"]))
        assert (labels == -1).any() == (labels.size > covered)
        assert info["licence"] == "CC0"
    assert members == len(items)


def test_more_training_images_leave_the_held_out_ones_as_they_were(tmp_path, monkeypatch):
    """nuclei.py --train-also DIR: the folder's images join the training images after the
    split (masks with unannotated pixels too), the held-out images stay; the record says so.
    With --limit 0 they alone are trained on."""
    import json

    import nuclei

    from conftest import make_blobs

    X, y = make_blobs(7, shapes=[(64, 64)], channels=None, seed=1)
    X_more, y_more = make_blobs(3, shapes=[(48, 48)], channels=None, seed=3)
    y_more[0][:, :8] = -1  # a gap nobody annotated, as between the images of a mosaic
    folders = {tmp_path: (X, y), tmp_path / "more": (X_more, y_more)}
    data = nuclei.Dataset("blobs", tmp_path, tmp_path / "blobs.json", lambda d: folders[d])
    common = ["nuclei.py", "--device", "cpu"]
    for setting in ("module__base_channels=4", "module__depth=2", "patch_size=32", "max_epochs=1"):
        common += ["--set", setting]
    monkeypatch.setattr(sys, "argv", [*common, "--name", "plain"])
    nuclei.main(dataset=data)
    more = ["--name", "more", "--train-also", str(tmp_path / "more")]
    monkeypatch.setattr(sys, "argv", [*common, *more])
    nuclei.main(dataset=data)
    record = json.loads((tmp_path / "blobs.json").read_text())
    assert record["more"]["training_images"] == record["plain"]["training_images"] + 3
    assert record["more"]["train_also"] == [(tmp_path / "more").as_posix()]
    assert "train_also" not in record["plain"]
    assert record["more"]["held_out_images"] == record["plain"]["held_out_images"]
    plain, more = (record[k]["variants"]["distance"] for k in ("plain", "more"))
    assert plain["n_true"] == more["n_true"]  # the same held-out nuclei
    only = ["--name", "only", "--limit", "0", "--train-also", str(tmp_path / "more")]
    monkeypatch.setattr(sys, "argv", [*common, *only])  # theirs alone (a CC0-only model)
    nuclei.main(dataset=data)
    record = json.loads((tmp_path / "blobs.json").read_text())
    assert record["only"]["training_images"] == 3
    assert record["only"]["variants"]["distance"]["n_true"] == plain["n_true"]
    monkeypatch.setattr(sys, "argv", [*common, "--name", "none", "--limit", "0"])
    with pytest.raises(SystemExit, match="no training images"):
        nuclei.main(dataset=data)


def test_a_nuclei_run_continues_a_saved_network_of_its_split(tmp_path, monkeypatch):
    """nuclei.py --init: the saved network's weights and history go on training by the
    same recipe; the record names the file; the model saved after it fits afresh."""
    import json

    import nuclei

    from conftest import make_blobs
    from skunet import UNetSegmenter

    X, y = make_blobs(7, shapes=[(64, 64)], channels=None, seed=1)
    data = nuclei.Dataset("blobs", tmp_path, tmp_path / "blobs.json", lambda _: (X, y))
    common = ["nuclei.py", "--save", str(tmp_path), "--device", "cpu"]  # cpu: recorded
    for setting in ("module__base_channels=4", "module__depth=2", "patch_size=32", "max_epochs=1"):
        common += ["--set", setting]
    monkeypatch.setattr(sys, "argv", [*common, "--name", "first"])
    nuclei.main(dataset=data)
    first = tmp_path / "first-distance.skunet"
    monkeypatch.setattr(sys, "argv", [*common, "--name", "more", "--init", str(first)])
    nuclei.main(dataset=data)
    before, after = UNetSegmenter.load(first), UNetSegmenter.load(tmp_path / "more-distance.skunet")
    assert len(after.history) == 2 and after.history[0] == before.history[0]
    assert not after.warm_start and after.module__base_channels == before.module__base_channels
    record = json.loads((tmp_path / "blobs.json").read_text())
    assert record["more"]["init"] == first.as_posix() and "init" not in record["first"]
    assert record["more"]["variants"]["distance"]["epochs_run"] == 2
    assert "| more (1 + 1 epochs) |" in nuclei.table(record)


def test_a_nuclei_run_adapts_a_one_channel_model_to_colour_tiles(tmp_path, monkeypatch):
    """nuclei.py --init MODEL --adapt haematoxylin: a gray model's weights start a new
    model for RGB tiles; the record says which, and no earlier epochs are counted."""
    import json

    import nuclei

    from conftest import make_blobs
    from skunet import UNetSegmenter
    from skunet.adaptation import CHANNEL_WEIGHTS

    gray = make_blobs(7, shapes=[(64, 64)], channels=None, seed=1)
    X, y = make_blobs(7, shapes=[(64, 64)], channels=3, seed=2)
    monkeypatch.chdir(tmp_path)
    common = ["nuclei.py", "--save", "runs", "--device", "cpu"]
    for setting in ("module__base_channels=4", "module__depth=2", "patch_size=32", "max_epochs=1"):
        common += ["--set", setting]
    data = nuclei.Dataset("gray", tmp_path, tmp_path / "gray.json", lambda _: gray)
    monkeypatch.setattr(sys, "argv", [*common, "--name", "gray"])
    nuclei.main(dataset=data)
    results = tmp_path / "results" / "he_nuclei.json"
    data = nuclei.Dataset("rgb", tmp_path, results, lambda _: (X, y))
    argv = [*common, "--name", "rgb", "--init", "runs/gray-distance.skunet"]
    monkeypatch.setattr(sys, "argv", [*argv, "--adapt", "haematoxylin"])
    nuclei.main(dataset=data)
    result = json.loads(results.read_text())["rgb"]["variants"]["distance"]
    weights = list(CHANNEL_WEIGHTS["haematoxylin"])
    assert result["adapted"] == {
        "base": "runs/gray-distance.skunet", "channels": "haematoxylin", "weights": weights
    }  # fmt: skip
    assert result["epochs_run"] == 1 and "epochs_before" not in result
    saved = UNetSegmenter.load(tmp_path / "runs" / "rgb-distance.skunet")
    assert saved.n_channels_in_ == 3 and saved.adapted_["channels"] == "haematoxylin"

    # shipped: the card says where its weights started
    import ship
    import tifffile

    for i, (image, mask) in enumerate(zip(X, y)):
        for folder, array in (("images", image), ("masks", mask)):
            (tmp_path / "he" / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp_path / "he" / folder / f"t{i}.tif", array)
    shipping(monkeypatch, tmp_path, "nuclei-he", "runs/rgb-distance.skunet", "he", "--version",
             "9.9.9", "--figures-from", "rgb", "--timed-images", "1",
             "--training-command", "python x")  # fmt: skip
    ship.main()
    card = json.loads((tmp_path / "models" / "models.json").read_text())[0]
    assert card["training_data"]["started_from"].startswith("runs/gray-distance.skunet's ")
    assert "(haematoxylin)" in card["training_data"]["started_from"]
    assert "; started from runs/gray-distance.skunet (haematoxylin);" in card["description"]


def test_the_magnification_benchmark_scores_shrunk_tiles_with_and_without_scale(
    tmp_path, monkeypatch
):
    """magnification.py: the split's held-out tiles shrunk by each factor, their labels
    resized to match, predicted with scale=1 and scale=factor; one record per model."""
    import json

    import magnification
    import tifffile

    from conftest import make_blobs, tiny

    X, y = make_blobs(7, shapes=[(64, 64)], channels=3, seed=2)
    for i, (image, mask) in enumerate(zip(X, y)):
        for folder, array in (("images", image), ("masks", mask)):
            (tmp_path / "he" / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp_path / "he" / folder / f"t{i}.tif", array)
    model = tiny(target="distance", n_classes=4, max_epochs=1).fit(X, y)
    model.save(tmp_path / "m.skunet")
    small, truth = magnification.shrink(X[0], y[0], 2)
    assert small.shape == (32, 32, 3) and truth.shape == (32, 32)
    assert set(np.unique(truth)) <= set(np.unique(y[0]))  # labels, not blends of them
    out = tmp_path / "results.json"
    monkeypatch.setattr(magnification, "RESULTS_FILE", out)
    argv = ["magnification.py", str(tmp_path / "m.skunet"), "--data", str(tmp_path / "he"),
            "--factors", "2", "--name", "tiny"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    magnification.main()
    record = json.loads(out.read_text())["tiny"]
    assert record["held_out_images"] == 1
    assert {"full size", "shrunk 2x, scale=1", "shrunk 2x, scale=2"} <= set(record)
    assert 0 <= record["shrunk 2x, scale=2"]["aji"] <= 1
