"""The ``skunet`` command line: ``train``, ``fine-tune``, ``predict``, ``models``,
``evaluate``, ``export`` and ``demo``.

Every command prints a one-line message and exits with status 2 on bad input (a missing
folder, an unreadable file, a model that does not fit the images or the request), and
with 0 on success. Progress bars go to stderr; results to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import commands

__all__ = ["build_parser", "main"]


_OPTIONS = {
    "images": dict(required=True, help="folder of images"),
    "masks": dict(required=True, help="folder of masks, same file names"),
    "model": dict(
        required=True,
        help="a file written by skunet train / save, or a pretrained model's name (skunet models)",
    ),
    "device": dict(default="cpu", help="torch device (default cpu)"),
    "seed": dict(type=int, default=0, help="random seed (default 0)"),
}


def _add(parser: argparse.ArgumentParser, *names: str) -> None:
    """The options several commands share, spelled and explained once."""
    for name in names:
        parser.add_argument(f"--{name}", **_OPTIONS[name])


def build_parser() -> argparse.ArgumentParser:
    from ..adaptation import CHANNEL_WEIGHTS
    from ..export import FORMATS
    from ..tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="skunet", description="U-Net image segmentation as a scikit-learn estimator."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train on the bundled nuclei sample, report held-out IoU and AP, save pictures",
        description="Train a small U-Net on 9 bundled DSB2018 nuclei images (one to four "
        "minutes on 2 CPU cores, AVX-512 or AVX2-only), print its IoU and object AP on the "
        "3 other images beside the pretrained nuclei model's, and write metrics.json, "
        "predictions.png and nuclei.png.",
    )
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--out", default="skunet-demo", help="output folder (default skunet-demo)")
    _add(demo, "seed", "device")
    demo.set_defaults(func=commands.demo)

    tasks = TASKS.values()
    train = sub.add_parser(
        "train",
        help="train a task preset on folders of images and masks, save the model",
        description="Train a task preset on images and masks paired by file name and save "
        "the fitted model to one .skunet file. Masks: "
        + "; ".join(f"{t.masks} ({t.name})" for t in tasks)
        + ".",
    )
    train.add_argument(
        "--preset",
        required=True,
        choices=sorted(TASKS),
        help="; ".join(f"{t.name}: {t.summary}" for t in tasks),
    )
    train.add_argument(
        "--recipe",
        help="the preset's recipe: "
        + "; ".join(
            f"{t.name}: {', '.join(t.recipes)} (default {t.default_recipe})" for t in tasks
        ),
    )
    train.add_argument(
        "--classes", type=int, help="generic preset: classes of the masks (default 2)"
    )
    train.add_argument(
        "--instance-masks",
        action="store_true",
        help="generic preset: the masks hold instance labels (train boundaries, predict objects)",
    )
    _add(train, "images", "masks")
    train.add_argument("--out", required=True, help="model file to write (e.g. model.skunet)")
    train.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    train.add_argument("--patch-size", type=int, help="training patch side (pixels)")
    _add(train, "device", "seed")
    train.add_argument(
        "--param",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any segmenter parameter, e.g. module__base_channels=16 or lr=3e-4 (repeatable; "
        "values are read as JSON, else as text)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.set_defaults(func=commands.train)

    predict = sub.add_parser(
        "predict",
        help="segment images with a saved model, masks written under the inputs' names",
        description="Write one mask per input image into --out, named like the input: "
        "PNG (TIFF for TIFF inputs or more than 65535 objects), 8-bit or 16-bit as the "
        "values need. A Zarr or OME-Zarr image (a .zarr path) is predicted block by block "
        "into the OME-Zarr image --out (a .zarr path), on a Dask cluster with --scheduler; "
        "run again, an interrupted prediction of classes resumes where it stopped.",
    )
    _add(predict, "model")
    predict.add_argument(
        "inputs", nargs="+", help="image files or folders of images, or one .zarr image"
    )
    predict.add_argument("--out", required=True, help="output folder (a .zarr for a Zarr input)")
    predict.add_argument(
        "--instances",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="instance labels, not classes (the default for a pretrained instance model)",
    )
    predict.add_argument("--tile-size", type=int, help="network input size for tiled prediction")
    predict.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="resize each image by this factor for the network, masks at the image's size: "
        "the model's training magnification over the images' (2 for 20x images and a 40x "
        "model; default 1)",
    )
    _add(predict, "device")
    predict.add_argument("--overwrite", action="store_true", help="replace existing masks")
    predict.add_argument(
        "--chunks",
        type=int,
        default=2048,
        help="block side of a Zarr output (default 2048): the unit of work and of resuming",
    )
    predict.add_argument(
        "--scheduler", help="a Dask scheduler's address (tcp://host:8786) for a Zarr input"
    )
    predict.set_defaults(func=commands.predict)

    tune = sub.add_parser(
        "fine-tune",
        help="fine-tune a model on folders of images and masks, save it",
        description="Continue training a pretrained model or a model file on your images "
        "and masks (paired by file name) with the fine-tuning recipe "
        "(skunet.pretrained.FINE_TUNING) within --minutes, hold one image out to calibrate "
        "an instance model's thresholds when there are three or more, and save the model.",
    )
    _add(tune, "model")
    tune.add_argument("images", help="folder of images")
    tune.add_argument(
        "masks",
        help="folder of masks, same file names; -1 (signed integers) marks pixels nobody "
        "annotated, which are neither taught nor scored",
    )
    tune.add_argument("--minutes", type=float, help="training budget in minutes (wall clock)")
    tune.add_argument(
        "--epochs", type=int, help="at most this many epochs (default: 30; with --minutes, none)"
    )
    tune.add_argument(
        "--adapt",
        choices=list(CHANNEL_WEIGHTS),
        help="start a one-channel (gray) model on colour images: its first convolution "
        "takes these channel weights (skunet.adaptation.adapt_input; haematoxylin: RGB H&E "
        "and bright-field, nuclei dark)",
    )
    tune.add_argument(
        "--complete",
        action="store_true",
        help="every mask labels all of its cells (default: a mask labelling far less of its "
        "image than the others, where the others' cells show unlabelled, is taken as partly "
        "annotated and its unlabelled pixels are not taught as background)",
    )
    tune.add_argument("--out", required=True, help="model file to write (e.g. my.skunet)")
    _add(tune, "device", "seed")
    tune.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    tune.set_defaults(func=commands.fine_tune)

    models = sub.add_parser(
        "models",
        help="the pretrained models: cards with data, licence and held-out figures",
        description="List the registered pretrained models (skunet.pretrained.list_models), "
        "for skunet predict --model NAME.",
    )
    models.add_argument("--json", action="store_true", help="print the cards as JSON")
    models.set_defaults(func=commands.models)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a saved model on images and masks: the task's metrics as a table",
        description="The metrics of the model's task: "
        + "; ".join(
            f"{t.name}: {', '.join([*t.metrics, *t.label_metrics])}"
            + (" (objects when the masks hold labels)" if t.label_metrics else "")
            for t in tasks
        )
        + ".",
    )
    _add(evaluate, "model", "images", "masks", "device")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(func=commands.evaluate)

    formats = FORMATS.values()
    export = sub.add_parser(
        "export",
        help="write a model for other tools: " + ", ".join(FORMATS),
        description="; ".join(f"{f.name}: {f.summary}" for f in formats)
        + '. Needs pip install "skunet[export]".',
    )
    _add(export, "model")
    export.add_argument(
        "out", help="file to write (" + ", ".join(f"{f.suffix} for {f.name}" for f in formats) + ")"
    )
    export.add_argument("--format", choices=sorted(FORMATS), default="bioimageio")
    export.add_argument(
        "--author",
        dest="authors",
        metavar="AUTHOR",
        action="append",
        help="who trained the model (repeatable; required "
        "for a model file, a pretrained model has its own)",
    )
    export.add_argument("--name", help="the model's name")
    export.add_argument("--description", help="one paragraph on what the model does")
    export.add_argument("--licence", help="SPDX licence (default CC-BY-4.0, or the card's)")
    export.add_argument(
        "--test-image", help="an image for the test tensors and cover (default: the bundled sample)"
    )
    export.add_argument(
        "--input-dtype",
        choices=("float32", "uint8", "uint16"),
        help="models without normalize: the dtype consumers hand in (default float32 in [0, 1])",
    )
    _add(export, "device")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    export.set_defaults(func=commands.export)
    return parser


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _version() -> str:
    from ..version import __version__

    return f"skunet {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("epochs", "patch_size", "tile_size", "classes", "chunks"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"skunet {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
