"""The ``skunet`` command line: ``train``, ``predict``, ``models``, ``evaluate`` and ``demo``.

Every command prints a one-line message and exits with status 2 on bad input (a missing
folder, an unreadable file, a model that does not fit the images or the request), and
with 0 on success. Progress bars go to stderr; results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, seed=args.seed, device=args.device)
    return 0


def _read_pairs(images: str, masks: str, n_channels: int):
    """Images (as ``n_channels`` channels) and masks paired by name, and the pairs' file
    names (for messages)."""
    from .datasets import paired_files, read_image
    from .tasks import as_task_color

    pairs = paired_files(images, masks)
    X = [as_task_color(read_image(image), n_channels) for image, _ in pairs.values()]
    y = [read_image(mask) for _, mask in pairs.values()]
    return X, y, [(str(image), str(mask)) for image, mask in pairs.values()]


@contextlib.contextmanager
def _naming_files(files: list[tuple[str, str]]):
    """Errors about ``X[i]`` / ``y[i]`` name the image / mask file instead."""
    try:
        yield
    except (ValueError, TypeError) as exc:

        def name(m: re.Match) -> str:
            i = int(m.group(2))
            return repr(files[i][m.group(1) == "y"]) if i < len(files) else m.group(0)

        raise type(exc)(re.sub(r"\b([Xy])\[(\d+)\]", name, str(exc))) from exc


def _train(args: argparse.Namespace) -> int:
    from .callbacks import ProgressBar
    from .presets import PRESETS
    from .tasks import get_task

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{str(out)!r} exists; pass --overwrite to replace it")
    task = get_task(args.preset)
    params = {"device": args.device, "random_state": args.seed, "verbose": 1}
    for option, param in (("epochs", "max_epochs"), ("patch_size", "patch_size")):
        if getattr(args, option) is not None:
            params[param] = getattr(args, option)
    if args.recipe:
        params["recipe"] = args.recipe
    if args.classes is not None or args.instance_masks:
        if task.name != "generic":
            raise ValueError(
                f"--classes and --instance-masks are for --preset generic, not {task.name}"
            )
        params.update(n_classes=args.classes or 2, instances=args.instance_masks)
    params.update(args.param)
    X, y, files = _read_pairs(args.images, args.masks, task.channels)
    seg = PRESETS[task.name](**params)
    seg.set_params(callbacks=[*(seg.callbacks or []), ("progress_bar", ProgressBar())])
    print(f"training the {args.preset} preset on {len(X)} images", file=sys.stderr)
    with _naming_files(files):
        seg.fit(X, y)
    seg.save(out, overwrite=args.overwrite)
    print(f"saved {out}")
    return 0


def _load(args: argparse.Namespace):
    from .estimator import UNetSegmenter
    from .pretrained import list_models, load_model

    model = Path(args.model)
    cards = list_models()
    if not model.is_file() and args.model in {k for c in cards for k in (c.name, c.key)}:
        seg = load_model(args.model, device=args.device)
    elif not model.is_file():
        raise FileNotFoundError(
            f"model file {str(model)!r} does not exist, and it is not a pretrained model "
            f"({', '.join(sorted({c.name for c in cards}))}: see skunet models)"
        )
    else:
        seg = UNetSegmenter.load(model, device=args.device)
    if getattr(args, "tile_size", None) is not None:
        seg.set_params(tile_size=args.tile_size)
    return seg.set_params(verbose=1)


def _input_files(inputs: list[str]) -> list[Path]:
    from .datasets import IMAGE_EXTENSIONS

    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"no image files in folder {str(item)!r}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {str(item)!r} does not exist")
    stems = [p.stem for p in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"inputs share output names: {', '.join(twice[:5])}")
    return files


def _output_path(out: Path, source: Path, mask) -> Path:
    tiff = source.suffix.lower() in (".tif", ".tiff") or mask.max() > 65535
    return out / (source.stem + (".tif" if tiff else ".png"))


def _write_mask(path: Path, mask) -> None:
    import numpy as np
    import tifffile
    from PIL import Image

    from .persistence import atomic_path

    dtype = np.uint8 if mask.max() < 256 else np.uint16 if mask.max() < 65536 else np.uint32
    with atomic_path(path) as tmp:
        if path.suffix == ".tif":
            tifffile.imwrite(tmp, mask.astype(dtype), compression="zlib")
        else:
            Image.fromarray(mask.astype(dtype)).save(tmp, format="PNG")


def _predict(args: argparse.Namespace) -> int:
    from .datasets import read_image
    from .progress import tqdm
    from .tasks import as_task_color

    seg = _load(args)
    if args.instances is None:  # a pretrained model's objects by default, a file's classes
        args.instances = hasattr(seg, "pretrained_") and seg.predictor_.gives_instances
    if args.instances and not seg.predictor_.gives_instances:
        raise ValueError(
            f"--instances needs a binary or nuclei (boundary / distance) model; {args.model} has "
            f"{seg.n_classes} classes"
        )
    files = _input_files(args.inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for source in tqdm(files, desc="predict", unit="image", disable=len(files) < 2):
        image = as_task_color(read_image(source), seg.n_channels_in_)
        predict = seg.predict_instances if args.instances else seg.predict
        mask = predict([image])[0]
        target = _output_path(out, source, mask)
        if target.exists() and not args.overwrite:
            raise FileExistsError(f"{str(target)!r} exists; pass --overwrite to replace it")
        _write_mask(target, mask)
        written += 1
    print(f"wrote {written} mask(s) to {out}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .pretrained import list_models

    cards = list_models()
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return 0
    for card in cards:
        ap = card.figures.get("ap", {})
        figures = ", ".join(f"AP@{t} {ap[t]:.3f}" for t in ("0.50", "0.75", "0.90") if t in ap)
        print(f"{card.key}  {card.task}  {card.size / 1e6:.1f} MB  {card.licence}")
        print(f"  {card.description}")
        data = card.training_data
        print(f"  trained on {data.get('images')} images of {data.get('source')}")
        if figures:
            print(
                f"  held out ({card.figures.get('images')} images): {figures}; "
                f"{card.figures.get('seconds_per_megapixel', 0):.1f} s per megapixel"
            )
        for limit in card.limits:
            print(f"  limit: {limit}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import task_metrics

    seg = _load(args)
    X, y, files = _read_pairs(args.images, args.masks, seg.n_channels_in_)
    with _naming_files(files):
        metrics = task_metrics(seg, X, y)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    width = max(len(k) for k in metrics)
    print(f"{'metric':<{width}}  value")
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    return 0


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
    from .tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="skunet", description="U-Net image segmentation as a scikit-learn estimator."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train on the bundled nuclei sample, report held-out IoU, save a picture",
        description="Train a small U-Net on 9 bundled DSB2018 nuclei images (about two "
        "minutes on 2 CPU cores), print the IoU on 3 held-out images and write "
        "metrics.json and predictions.png.",
    )
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--out", default="skunet-demo", help="output folder (default skunet-demo)")
    _add(demo, "seed", "device")
    demo.set_defaults(func=_demo)

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
    train.add_argument("--recipe", help="the preset's recipe (default: its first)")
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
    train.set_defaults(func=_train)

    predict = sub.add_parser(
        "predict",
        help="segment images with a saved model, masks written under the inputs' names",
        description="Write one mask per input image into --out, named like the input: "
        "PNG (TIFF for TIFF inputs or more than 65535 objects), 8-bit or 16-bit as the "
        "values need.",
    )
    _add(predict, "model")
    predict.add_argument("inputs", nargs="+", help="image files or folders of images")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument(
        "--instances",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="instance labels, not classes (the default for a pretrained instance model)",
    )
    predict.add_argument("--tile-size", type=int, help="network input size for tiled prediction")
    _add(predict, "device")
    predict.add_argument("--overwrite", action="store_true", help="replace existing masks")
    predict.set_defaults(func=_predict)

    models = sub.add_parser(
        "models",
        help="the pretrained models: cards with data, licence and held-out figures",
        description="List the registered pretrained models (skunet.pretrained.list_models), "
        "for skunet predict --model NAME.",
    )
    models.add_argument("--json", action="store_true", help="print the cards as JSON")
    models.set_defaults(func=_models)

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
    evaluate.set_defaults(func=_evaluate)
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
    from .version import __version__

    return f"skunet {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("epochs", "patch_size", "tile_size", "classes"):
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
