"""Ship a trained blood-cell, EM or H&E nuclei model inside the package: file and card.

    python benchmarks/wbc.py --recipes fast                        # the recipe's CV
    python benchmarks/wbc.py --recipes fast --all-images --save runs/wbc
    python benchmarks/ship.py runs/wbc/wbc_fast_all.skunet --card blood-cells \\
        --version 0.1.0 --figures-from fast --training-command "python benchmarks/wbc.py ..."

MODEL is either the recipe trained on every image of its dataset (``wbc.py
--all-images``, ``em.py --all-slices``), so that no image of the dataset can judge it and
its card carries the held-out figures of the same recipe's complete cross-validation,
record ``--figures-from`` of ``benchmarks/results/wbc.json`` or ``em.json``; or the
network of a held-out split (``he_nuclei.py --save``), whose card carries that record's
figures on the images it never saw (listed in ``training_data["held_out"]``) and the
StarDist peer's of the same run; or that split's recipe trained on every image
(``he_nuclei.py --all-images``, found in ``--training-command``, whose recipe must be the
record's less the wall-time cap), whose card carries the split's figures, as the nuclei
cards do, and holds nothing out. What is MODEL's own: the file in ``--precision``
(float16 by default), its size and sha256, and its prediction seconds per megapixel on
this machine, timed on ``--timed-images`` of the dataset's images with the model's own
settings (flips averaged where ``tta``). The card's command is ``--training-command``
and this one; it must run as written from the repository (no absolute paths). The card
of the same name and version in ``skunet/data/models/models.json`` is replaced, no
other; the DSB2018 nuclei models are shipped by ``benchmarks/pretrained.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from _record import RESULTS, load, machine
from he_nuclei import DEFAULT_DATA as HE_DATA
from he_nuclei import load_he
from nuclei import per_megapixel, split

from skunet import UNetSegmenter
from skunet.datasets import load_isbi2012, load_wbc, paired_files
from skunet.mixed_precision import autocast_dtype
from skunet.pretrained import CARDS_FILE, ModelCard, check_file

SHIP_DIR = Path(__file__).resolve().parents[1] / "skunet" / "data" / "models"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# What each shippable model's card says beside its figures.
CARDS = {
    "blood-cells": {
        "task": "blood-cells",
        "results": "wbc.json",
        "data": SHARED / "wbc",
        "load": load_wbc,
        "licence": "GPL-3.0-only",
        "training_data": {
            "source": "Dataset 1 of Zheng et al., Micron 107:55-71 (2018), "
            "doi:10.1016/j.micron.2018.01.010 (github zxaoyou/segmentation_WBC, commit "
            "fa9c0162): 240 of its 300 images, the other 60 (numpy.random.default_rng(0)"
            ".permutation(300)[:60] over ids 001-300) kept apart as a hold-out set",
            "images": 240,
            "licence": "GPL-3.0 (the source repository's LICENSE)",
            "acknowledgement": "Images provided by Jiangxi Tecom Science Corporation, China; "
            "cite Zheng X., Wang Y., Wang G., Liu J., Micron 107:55-71 (2018)",
            "held_out": [],
        },
        "limits": [
            "one white blood cell per image, centred, as in Dataset 1 (88-120 px crops of "
            "a rapid-stained peripheral blood smear at its magnification); the clean-up "
            "keeps the largest cell only, so a field of view with several cells needs "
            "postprocess=None and will merge touching cells",
            "RGB images of that stain and camera (Motic Moticam Pro 252A, N800-D "
            "microscope); other stains, cameras and scales are untested",
            "red blood cells are background; the classes are background, cytoplasm, "
            "nucleus: no cell types",
        ],
        "description": "U-Net (depth 4, 16 channels, batch norm) on 3 classes, flips "
        "averaged, the largest cell kept with its holes filled",
    },
    "em": {
        "task": "em",
        "results": "em.json",
        "data": SHARED / "isbi2012",
        "load": load_isbi2012,
        # an SPDX id (the BioImage Model Zoo takes no other): non-commercial, as the
        # challenge's terms for its data (research use)
        "licence": "CC-BY-NC-4.0",
        "training_data": {
            "source": "ISBI 2012 challenge training volume (serial-section TEM of the "
            "Drosophila first instar larva ventral nerve cord; Cardona et al., PLoS Biol "
            "8(10): e1000502, 2010), the 30 labelled slices via github zhixuhao/unet "
            "(commit b45af4d4)",
            "images": 30,
            "use": "em.py --all-slices: 25 slices trained on; 5 spread through the stack "
            "(5, 11, 17, 23, 29) held out of the training to calibrate the cells' threshold "
            "and split",
            "licence": "non-commercial segmentation research; cite Cardona et al. (2010) "
            "and Arganda-Carreras et al., Front. Neuroanat. 9:142 (2015)",
            "held_out": [],
        },
        "limits": [
            "serial-section TEM of neural tissue at the challenge's resolution (4 x 4 nm "
            "pixels, 512 x 512 slices); other EM modalities, stains or scales are untested",
            "2-D slices one at a time: no 3-D context, so cells are not linked across slices",
            "cells are the regions between predicted membranes (threshold and split "
            "calibrated on 5 of its training slices); mitochondria and other dark "
            "organelles can split a cell",
        ],
        "description": "U-Net (depth 4, 16 channels, batch norm) on membrane / cell "
        "probabilities with the 2015 paper's weight map, cells from the calibrated "
        "membrane decoder",
    },
    "nuclei-he": {
        "task": "nuclei",
        "results": "he_nuclei.json",
        "data": HE_DATA,
        "load": load_he,
        "licence": "CC-BY-NC-SA-4.0",  # the most restrictive of its data's: MoNuSeg's
        "training_data": {
            "source": "H&E tiles at 40x assembled by benchmarks/he_data.py: the 30 MoNuSeg "
            "2018 training tiles (Kumar et al., IEEE TMI 2017; github ykrmm/monuseg 93a696d, "
            "labels from the XML polygons or, where absent, its colour masks of b88deaf, "
            "the lenses where two see-through nuclei overlap merged) and "
            "the 15 CPM-15 tiles (github pengyzhang/cell_seg_matlab 9a3cf3b; the 20x ones "
            "enlarged 2x). The 14 MoNuSeg 2018 test images were never read",
            "images": 45,
            "licence": "MoNuSeg: CC BY-NC-SA 4.0; CPM-15: challenge data for research",
        },
        "limits": [
            "H&E-stained histology at 40x (about 0.25 um per pixel), nuclei about 10-40 px "
            "across; rescale 20x images 2x up (skimage.transform.rescale) before predicting",
            "RGB images; stains, scanners and organs beyond its 45 training tiles "
            "(MoNuSeg's 7 organs, CPM-15's brain tumours) are untested",
            "no classification of nuclei (tumour, lymphocyte ...): instances only",
        ],
        "description": "U-Net (depth 4, 16 channels, batch norm) on 4 distance levels of "
        "RGB H&E tiles, watershed instances, flips averaged",
    },
}


# Options of a benchmark's command that do not change what it trains: where it writes,
# what it names the record, how much it prints, the wall-time cap (the epochs each run
# trained are on the card), and --all-images / --all-slices themselves.
RUN_ONLY = {"--keep": 1, "--save": 1, "--name": 1, "--out": 1, "--verbose": 1, "--minutes": 1}
ALL_IMAGES = ("--all-images", "--all-slices")


def without(words: list[str], flags: dict[str, int]) -> list[str]:
    """``words`` less each of ``flags`` (an option: how many values follow it, or its
    value joined by ``=``)."""
    kept, skip = [], 0
    for word in words:
        if skip:
            skip -= 1
        elif word in flags:
            skip = flags[word]
        elif word.partition("=")[0] not in flags:
            kept.append(word)
    return kept


def recipe(words: list[str]) -> list[tuple[str, ...]]:
    """A benchmark command's recipe: its options with their values, in any order, less
    :data:`RUN_ONLY` and :data:`ALL_IMAGES`."""
    groups: list[list[str]] = [[]]
    for word in without(words, {**RUN_ONLY, **dict.fromkeys(ALL_IMAGES, 0)}):
        if word.startswith("--"):
            groups.append([])
        groups[-1].append(word)
    return sorted(tuple(group) for group in groups)


def trained_on_every_image(training_command: str) -> list[str] | None:
    """The part of ``training_command`` (commands joined by ``&&``) that trains on every
    image of the dataset (``--all-images`` / ``--all-slices``), or None."""
    parts: list[list[str]] = [[]]
    for word in shlex.split(training_command):
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    return next((part for part in parts if set(ALL_IMAGES) & set(part)), None)


def held_out_figures(
    card: str, record_name: str, all_images: list[str] | None = None
) -> tuple[dict, str, list[str]]:
    """The held-out figures of ``record_name`` in the card's results file, what the card
    says of them, and the ids of the dataset's images the model never trained on: a
    complete cross-validation's, or a split's. MODEL is the split's network (the
    held-out images are its own), or ``all_images``, the command that trained MODEL on
    every image by the record's recipe (then no image was held out from MODEL)."""
    spec = CARDS[card]
    record = load(RESULTS / spec["results"]).get(record_name)
    if record is None or not (record.get("complete_cv") or record.get("held_out_images")):
        sys.exit(
            f"--figures-from: no complete cross-validation or held-out split {record_name!r} "
            f"in {spec['results']}"
        )
    words = shlex.split(record["command"])
    every = all_images or []
    if record.get("train_also") or any(w.partition("=")[0] == "--train-also" for w in every):
        sys.exit(
            f"{record_name!r} or the --training-command trained on --train-also images too, "
            f"which the {card!r} card's training data does not name: add their source there"
        )
    if all_images is not None and recipe(all_images) != recipe(words):
        sys.exit(
            f"--training-command trains on every image with {shlex.join(all_images)!r}, "
            f"not the recipe of record {record_name!r}: {record['command']!r}"
        )
    # --keep / --save only kept the networks or predictions somewhere: the figures come
    # from the rest of the command, which runs as written
    words = without(words, {"--keep": 1, "--save": 1})
    figures: dict = {"record": record_name, "command": shlex.join(words)}
    ran = record["machine"]
    unit = ran.get("instructions", "vector unit not recorded")
    trained_on = f"{ran['cpu']} ({unit}), {ran['cores']} cores"
    where = f"record {record_name!r} of benchmarks/results/{spec['results']}"
    if record.get("complete_cv"):
        figures["folds"] = len(record["folds"])
        for key, value in record["summary"].items():
            if isinstance(value, dict) and "mean" in value and key != "fit_seconds":
                figures[key] = {k: round(v, 4) for k, v in value.items()}
        minutes = record["summary"]["fit_seconds"]["mean"] / 60
        figures.update(training_minutes_per_fold=round(minutes, 1), trained_on=trained_on)
        note = (
            f"the figures are the same recipe's {figures['folds']}-fold cross-validation, {where}"
        )
        return figures, note, []
    ours = record["variants"]["distance"]
    figures["images"] = record["held_out_images"]
    figures.update({k: ours[k] for k in ("ap", "f1_50", "panoptic_quality_50", "aji")})
    figures.update(training_minutes=round(ours["fit_seconds"] / 60, 1), trained_on=trained_on)
    peer = record["variants"].get("stardist")
    if peer:  # the peer of the same run: same images, same minutes
        figures["stardist_same_minutes"] = {
            k: peer[k] for k in ("ap", "f1_50", "panoptic_quality_50", "aji", "fit_seconds")
        }
    ids = list(paired_files(spec["data"] / "images", spec["data"] / "masks"))
    test, _ = split(len(ids))
    if all_images is not None:
        note = (
            "every image: trained on, but for the recipe's validation share, which chose the "
            "checkpoint and the instance thresholds; the figures are those of the same recipe "
            f"on the benchmark's split ({ours['epochs_run']} epochs there), {where} (the "
            f"{len(test)} held-out images "
            "of that record were part of this model's training)"
        )
        return figures, note, []
    note = (
        f"the benchmark's split: {record['training_images']} images (a tenth of them chose "
        f"the checkpoint and the instance thresholds); its {len(test)} held-out images, "
        f"never seen, give the figures ({where})"
    )
    return figures, note, [ids[i] for i in test]


def seconds_per_megapixel(seg: UNetSegmenter, X: list) -> float:
    """Prediction wall time of ``seg``'s own ``predict`` (or cells: ``predict_instances``
    for models that decode instances) over ``X``, per megapixel."""
    predict = seg.predict_instances if getattr(seg, "instance_params_", None) else seg.predict
    predict(X[:1])  # warm-up: the first call allocates
    start = time.perf_counter()
    predict(X)
    return per_megapixel(time.perf_counter() - start, X)


def write_card(card: ModelCard, path: Path) -> None:
    """Check ``path`` against ``card`` and put the card into the shipped ``models.json``,
    replacing the card of the same name and version only."""
    absolute = [w for w in shlex.split(card.command) if w.startswith(("/", "~")) or w == "DIR"]
    if absolute:
        sys.exit(
            f"the card's command names {absolute[0]!r}: a card's command runs as written from "
            "the repository, so save models under a relative folder (runs/...)"
        )
    check_file(path, card)
    cards_path = SHIP_DIR / CARDS_FILE
    cards = json.loads(cards_path.read_text()) if cards_path.exists() else []
    cards = [c for c in cards if (c["name"], c["version"]) != (card.name, card.version)]
    cards_path.write_text(json.dumps([*cards, card.to_dict()], indent=2) + "\n")
    print(f"shipped {path} ({card.size / 1e6:.1f} MB) and its card in {cards_path}")


def without_training_command(argv: list[str]) -> list[str]:
    """The arguments less ``--training-command``, which the card's command starts with."""
    return without(argv, {"--training-command": 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the recipe trained on every image")
    parser.add_argument("--card", choices=sorted(CARDS), required=True)
    parser.add_argument("--version", required=True, help="its semantic version")
    parser.add_argument("--figures-from", required=True, metavar="RECORD")
    parser.add_argument(
        "--precision", default="float16", choices=["float32", "float16", "bfloat16"]
    )
    parser.add_argument("--training-command", required=True, help="what trained MODEL")
    parser.add_argument("--timed-images", type=int, default=30, help="how many to time on")
    args = parser.parse_args()
    spec = CARDS[args.card]
    all_images = trained_on_every_image(args.training_command)
    figures, note, held_out = held_out_figures(args.card, args.figures_from, all_images)
    trained = UNetSegmenter.load(args.model)
    adapted = getattr(trained, "adapted_", None)  # started from a gray model's weights
    started = {} if adapted is None else {
        "started_from": f"{adapted['base']}'s weights (its card: data and licence), adapted "
        f"to {len(adapted['weights'])} channels ({adapted['channels'] or 'given weights'}) "
        "by skunet.adaptation.adapt_input"
    }  # fmt: skip
    name = f"{args.card}-{args.version}.skunet"
    SHIP_DIR.mkdir(parents=True, exist_ok=True)
    path = trained.save(SHIP_DIR / name, weights=args.precision, overwrite=True)
    shipped = UNetSegmenter.load(path)
    X, _ = spec["load"](spec["data"])
    X = [X[i] for i in np.linspace(0, len(X) - 1, min(args.timed_images, len(X))).astype(int)]
    ran_on = machine()
    computed_in = str(autocast_dtype(shipped.device, shipped.autocast) or "float32")
    figures.update(
        seconds_per_megapixel=seconds_per_megapixel(shipped, X),
        tta=bool(shipped.tta),
        machine=f"{ran_on['cpu']} ({ran_on['instructions']}), {ran_on['torch_threads']} "
        f"torch threads, {computed_in.removeprefix('torch.')}",
    )
    argv = without_training_command(sys.argv[1:])
    card = ModelCard(
        name=args.card,
        version=args.version,
        task=spec["task"],
        file=name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
        licence=spec["licence"],
        training_data={
            **spec["training_data"],
            "images": spec["training_data"]["images"] - len(held_out),
            "note": f"{len(shipped.history)} epochs; {note}",
            "held_out": held_out,
            **started,
        },
        command=f"{args.training_command} && python " + shlex.join(["benchmarks/ship.py", *argv]),
        figures=figures,
        limits=tuple(spec["limits"]),
        description=f"{spec['description']}"
        + (f"; started from {adapted['base']} ({adapted['channels']})" if adapted else "")
        + f"; weights stored as {args.precision}",
    )
    write_card(card, path)


if __name__ == "__main__":
    main()
