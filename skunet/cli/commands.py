"""What each ``skunet`` command does, given its parsed arguments; 0 on success."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..persistence import refuse_existing
from .files import input_files, naming_files, output_path, read_pairs, write_mask
from .slides import is_zarr, predict_zarr

__all__ = [
    "EXPORT_OPTIONS", "demo", "evaluate", "export", "fine_tune", "load", "models", "predict",
    "train",
]  # fmt: skip

EXPORT_OPTIONS = {
    "name": "--name", "description": "--description", "authors": "--author",
    "licence": "--licence", "test_image": "--test-image", "input_dtype": "--input-dtype",
}  # fmt: skip
"""The export formats' options (:data:`skunet.export.FORMATS`) that ``skunet export``
offers, with their flags; a format is passed those it takes."""


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, epochs=args.epochs, seed=args.seed, device=args.device)
    return 0


def train(args: argparse.Namespace) -> int:
    from ..callbacks import ProgressBar
    from ..presets import segmenter
    from ..tasks import get_task

    out = Path(args.out)
    refuse_existing(out, args.overwrite, "--overwrite")
    task = get_task(args.preset)
    params = {"device": args.device, "random_state": args.seed, "verbose": 1}
    for option, param in (("epochs", "max_epochs"), ("patch_size", "patch_size")):
        if getattr(args, option) is not None:
            params[param] = getattr(args, option)
    if args.classes is not None or args.instance_masks:
        if task.name != "generic":
            raise ValueError(
                f"--classes and --instance-masks are for --preset generic, not {task.name}"
            )
        if args.instance_masks:
            params["target"] = "boundary"  # its classes from TARGETS
        if args.classes is not None:
            params["n_classes"] = args.classes
    params.update(args.param)
    X, y, files = read_pairs(args.images, args.masks, task.channels)
    seg = segmenter(task.name, args.recipe, **params)
    seg.set_params(callbacks=[*(seg.callbacks or []), ("progress_bar", ProgressBar())])
    print(f"training the {args.preset} preset on {len(X)} images", file=sys.stderr)
    with naming_files(files):
        seg.fit(X, y)
    seg.save(out, overwrite=args.overwrite)
    print(f"saved {out}")
    return 0


def fine_tune(args: argparse.Namespace) -> int:
    from ..callbacks import ProgressBar
    from ..pretrained import fine_tune as tune
    from ..pretrained import open_model

    out = Path(args.out)
    refuse_existing(out, args.overwrite, "--overwrite")
    if args.adapt:  # a gray model's weights for colour images
        from ..adaptation import adapt_input

        base = adapt_input(args.model, args.adapt, device=args.device)
    else:
        base = open_model(args.model, device=args.device)
    X, y, files = read_pairs(args.images, args.masks, base.n_channels_in_)
    params = {"device": args.device, "verbose": 1}
    if args.epochs is not None:
        params["max_epochs"] = args.epochs
    params["callbacks"] = [*(base.callbacks or []), ("progress_bar", ProgressBar())]
    adapted = f", adapted to {args.adapt}" if args.adapt else ""
    print(f"fine-tuning {args.model}{adapted} on {len(X)} images", file=sys.stderr)
    with naming_files(files):
        seg = tune(
            base if args.adapt else args.model, X, y, minutes=args.minutes, random_state=args.seed,
            partial=False if args.complete else "auto", **params,
        )  # fmt: skip
    seg.save(out, overwrite=args.overwrite)
    record = seg.fine_tuned_
    if record["partial"]:
        named = ", ".join(files[i][1] for i in record["partial"])
        print(f"taken as partly annotated (--complete if not): {named}", file=sys.stderr)
    held = ", thresholds calibrated on 1" if record["held_out"] else ""
    print(
        f"saved {out}: {record['epochs']} epochs in {record['seconds']:.0f} s on "
        f"{record['images']} images{held}"
    )
    return 0


def load(args: argparse.Namespace):
    from ..pretrained import open_model

    seg = open_model(args.model, device=args.device)
    if getattr(args, "tile_size", None) is not None:
        seg.set_params(tile_size=args.tile_size)
    return seg.set_params(verbose=1)


def predict(args: argparse.Namespace) -> int:
    from ..datasets import as_task_color, read_image
    from ..prediction.rescale import check_scale
    from ..progress import tqdm

    check_scale(args.scale)
    zarrs = [item for item in args.inputs if is_zarr(item)]
    if zarrs and args.scale != 1:
        raise ValueError("--scale is for image files: rescale a Zarr image before predicting it")
    seg = load(args)
    if args.instances is None:  # a pretrained model's objects by default, a file's classes
        args.instances = hasattr(seg, "pretrained_") and seg.predictor_.gives_instances
    if args.instances and not seg.predictor_.gives_instances:
        raise ValueError(
            f"--instances needs a binary or nuclei (boundary / distance) model; {args.model} has "
            f"{seg.n_classes} classes"
        )
    if zarrs:
        if len(args.inputs) > 1:
            raise ValueError(f"a Zarr input is predicted alone; got {len(args.inputs)} inputs")
        return predict_zarr(args, seg, Path(zarrs[0]))
    if args.scheduler:
        raise ValueError("--scheduler is for a Zarr input; image files are predicted here")
    files = input_files(args.inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for source in tqdm(files, desc="predict", unit="image", disable=len(files) < 2):
        image = as_task_color(read_image(source), seg.n_channels_in_)
        predict = seg.predict_instances if args.instances else seg.predict
        mask = predict([image], scale=args.scale)[0]
        target = output_path(out, source, mask)
        refuse_existing(target, args.overwrite, "--overwrite")
        write_mask(target, mask)
        written += 1
    print(f"wrote {written} mask(s) to {out}")
    return 0


def models(args: argparse.Namespace) -> int:
    from ..pretrained import list_models, locate

    cards = list_models()
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return 0
    missing = False
    for card in cards:
        found = locate(card)  # may hash the cache's files: once per card
        missing |= found is None
        where = found[0] if found else "not here: copy its file into the cache"
        print(f"{card.key}  {card.task}  {card.size / 1e6:.1f} MB  {where}")
        print(f"  licence: {card.licence}")
        print(f"  {card.description}")
        data = card.training_data
        print(f"  trained on {data.get('images')} images of {data.get('source')}")
        figures = headline(card.figures)
        if figures:
            print(
                f"  held out: {figures}; "
                f"{card.figures.get('seconds_per_megapixel', 0):.1f} s per megapixel"
            )
        for limit in card.limits:
            print(f"  limit: {limit}")
    if missing:
        from ..pretrained import cache_dir

        print(f"\nfiles not shipped are found in {cache_dir()} under any name (by sha256)")
    return 0


def headline(figures: dict) -> str:
    """A card's held-out figures in a line: AP at 0.5 / 0.75 / 0.9 (and AJI) for nuclei,
    the mean of each cross-validated figure (Dice, V_rand, pixel error) for the others."""
    ap = figures.get("ap", {})
    shown = [f"AP@{t} {ap[t]:.3f}" for t in ("0.50", "0.75", "0.90") if t in ap]
    if ap:
        shown.insert(0, f"{figures.get('images')} images")
    if isinstance(figures.get("aji"), float):  # H&E nuclei: MoNuSeg's ranking figure
        shown.append(f"AJI {figures['aji']:.3f}")
    means = {k: v["mean"] for k, v in figures.items() if isinstance(v, dict) and "mean" in v}
    if means:
        shown.insert(0, f"{figures.get('folds')}-fold cross-validation")
    shown += [f"{k.replace('_', ' ')} {v:.4f}" for k, v in means.items()]
    return ", ".join(shown)


def evaluate(args: argparse.Namespace) -> int:
    from ..tasks import task_metrics

    seg = load(args)
    X, y, files = read_pairs(args.images, args.masks, seg.n_channels_in_)
    with naming_files(files):
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


def export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    refuse_existing(out, args.overwrite, "--overwrite")
    from ..export import FORMATS, export

    options = {k: getattr(args, k, None) for k in EXPORT_OPTIONS}
    options = {k: v for k, v in options.items() if v is not None}
    spec = FORMATS[args.format]
    given = sorted(set(options) - set(spec.options))
    if given:
        raise ValueError(f"{EXPORT_OPTIONS[given[0]]} is not an option of --format {args.format}")
    seg = load(args).set_params(verbose=0)
    if "test_image" in options:
        from ..datasets import as_task_color, read_image

        image = read_image(options["test_image"])
        options["test_image"] = as_task_color(image, seg.n_channels_in_)
    export(seg, out, args.format, overwrite=args.overwrite, **options)
    print(f"wrote {out}")
    return 0
