"""Ship a trained blood-cell or EM model inside the package: its file and its card.

    python benchmarks/wbc.py --recipes fast --set max_epochs=200 --name 'fast, 200 epochs'
    python benchmarks/wbc.py --recipes fast --set max_epochs=200 --name 'fast, 200 epochs' \\
        --all-images --save runs/wbc
    python benchmarks/ship.py runs/wbc/'wbc_fast, 200 epochs_all.skunet' --card blood-cells \\
        --version 0.1.0 --figures-from 'fast, 200 epochs' --training-command "..."

MODEL is the recipe trained on every image of its dataset (``wbc.py --all-images``,
``em.py --all-slices``), so no image of the dataset can judge it: its card carries the
held-out figures of the same recipe's cross-validation, record ``--figures-from`` of
``benchmarks/results/wbc.json`` or ``em.json``. What is MODEL's own: the file in
``--precision`` (float16 by default), its size and sha256, and its prediction seconds
per megapixel on this machine, timed on the dataset's images with the model's own
settings (flips averaged where ``tta``). The card's command is ``--training-command``
and this one; it must run as written from the repository (no absolute paths). The
card of the same name and version in ``skunet/data/models/models.json`` is replaced,
no other; the nuclei models are shipped by ``benchmarks/pretrained.py``.
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

from skunet import UNetSegmenter
from skunet.datasets import load_isbi2012, load_wbc
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
        "licence": "research use only (the ISBI 2012 challenge's terms for its data)",
        "training_data": {
            "source": "ISBI 2012 challenge training volume (serial-section TEM of the "
            "Drosophila first instar larva ventral nerve cord; Cardona et al., PLoS Biol "
            "8(10): e1000502, 2010), the 30 labelled slices via github zhixuhao/unet "
            "(commit b45af4d4)",
            "images": 30,
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
}


def held_out_figures(card: str, record_name: str) -> dict:
    """The cross-validated figures of ``record_name`` in the card's results file."""
    spec = CARDS[card]
    records = load(RESULTS / spec["results"])
    record = records.get(record_name)
    if record is None or not record.get("complete_cv"):
        sys.exit(
            f"--figures-from: no complete cross-validation {record_name!r} in {spec['results']}"
        )
    folds = record["folds"]
    # --keep / --save only kept the folds' networks or predictions somewhere: the
    # figures come from the rest of the command, which runs as written
    words = shlex.split(record["command"])
    for flag in ("--keep", "--save"):
        if flag in words:
            del words[words.index(flag) : words.index(flag) + 2]
    figures = {"record": record_name, "command": shlex.join(words), "folds": len(folds)}
    for key, value in record["summary"].items():
        if isinstance(value, dict) and "mean" in value and key != "fit_seconds":
            figures[key] = {k: round(v, 4) for k, v in value.items()}
    figures["training_minutes_per_fold"] = round(record["summary"]["fit_seconds"]["mean"] / 60, 1)
    figures["trained_on"] = record["machine"]["cpu"]
    return figures


def seconds_per_megapixel(seg: UNetSegmenter, X: list) -> float:
    """Prediction wall time of ``seg``'s own ``predict`` (or cells: ``predict_instances``
    for models that decode instances) over ``X``, per megapixel."""
    predict = seg.predict_instances if getattr(seg, "instance_params_", None) else seg.predict
    predict(X[:1])  # warm-up: the first call allocates
    start = time.perf_counter()
    predict(X)
    return round((time.perf_counter() - start) / (sum(x.shape[0] * x.shape[1] for x in X) / 1e6), 2)


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
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--training-command"):
            skip = arg == "--training-command"  # its value follows as the next argument
            continue
        kept.append(arg)
    return kept


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
    figures = held_out_figures(args.card, args.figures_from)
    trained = UNetSegmenter.load(args.model)
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
            "note": f"every image, {len(shipped.history)} epochs; the figures are the "
            f"same recipe's {figures['folds']}-fold cross-validation, record "
            f"{args.figures_from!r} of benchmarks/results/{spec['results']}",
        },
        command=f"{args.training_command} && python " + shlex.join(["benchmarks/ship.py", *argv]),
        figures=figures,
        limits=tuple(spec["limits"]),
        description=f"{spec['description']}; weights stored as {args.precision}",
    )
    write_card(card, path)


if __name__ == "__main__":
    main()
