"""Where a training epoch's time goes, for each task preset, on the real data.

    python benchmarks/epoch_profile.py [--epochs 3] [--presets blood-cells:fast em:fast]

Fits each preset (its own recipe, its own data under ``shared/data``: 60 DSB2018
images, all 240 WBC images, the 30 ISBI slices) for ``--epochs`` epochs and splits the
wall time of every epoch after the first (which warms up; from the start of the epoch's
``on_epoch_begin`` to the end of its ``on_epoch_end``) into:

- ``forward``, ``loss``, ``backward``, ``optimizer``: the training steps (skorch's
  ``infer``, ``get_loss``, the rest of ``train_step_single``, the rest of ``train_step``);
- ``patches``, ``augmentation``, ``weight maps``: cutting the training windows (the
  data loader's time less the other two), the augmentation callable, the weight maps;
- ``validation``: the held-out images' loader, forward passes and losses;
- ``callbacks``: every callback (scoring, checkpoint, schedule, progress);
- ``other``: the epoch's wall time that none of the above accounts for.

The timers wrap skorch's public methods in a subclass and the preset's own callables,
so what is timed is the preset's real code. Writes ``benchmarks/results/profile.json``
and prints the docs table (``--table`` prints it from the file).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from _record import RESULTS, load, update
from _throughput import training_windows

from skunet.augment import flip_rotate
from skunet.datasets import load_dsb2018, load_isbi2012, load_wbc
from skunet.presets import segmenter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOADERS = {
    "nuclei": lambda: [xs[:60] for xs in load_dsb2018(DATA / "dsb2018", progress=False)],
    "blood-cells": lambda: load_wbc(DATA / "wbc"),
    "em": lambda: load_isbi2012(DATA / "isbi2012"),
}
PARTS = (
    "forward",
    "loss",
    "backward",
    "optimizer",
    "patches",
    "augmentation",
    "weight maps",
    "validation",
    "callbacks",
    "other",
)
RESULTS_FILE = RESULTS / "profile.json"


class Clock:
    """Seconds per part, counted only while ``on`` (a timed epoch); parts may nest, and
    :func:`breakdown` subtracts the inner ones from the part around them."""

    def __init__(self) -> None:
        self.on = False
        self.seconds: dict[str, float] = defaultdict(float)
        self.epochs = 0
        self.epoch_start = 0.0

    @contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.on:
                self.seconds[name] += time.perf_counter() - start

    def timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            with self.part(name):
                return fn(*args, **kwargs)

        return wrapper


class _TimedLoader:
    """A data loader whose ``next()`` calls are counted as ``name``."""

    def __init__(self, loader, clock: Clock, name: str) -> None:
        self.loader, self.clock, self.name = loader, clock, name

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            with self.clock.part(self.name):
                try:
                    batch = next(it)
                except StopIteration:
                    return
            yield batch


def profiled(seg, clock: Clock):
    """A copy of ``seg`` whose training steps, data and callbacks report to ``clock``."""

    class Profiled(type(seg)):
        def get_iterator(self, dataset, training=False):
            loader = super().get_iterator(dataset, training)
            return _TimedLoader(loader, clock, "data" if training else "validation data")

        def initialize_criterion(self):
            super().initialize_criterion()
            weight_map = getattr(self.criterion_, "weight_map", None)
            if weight_map is not None:
                self.criterion_.weight_map = clock.timed("weight maps", weight_map)
            return self

        def infer(self, x, **fit_params):
            name = "forward" if self.module_.training else "validation forward"
            with clock.part(name):
                return super().infer(x, **fit_params)

        def get_loss(self, *args, **kwargs):
            with clock.part("loss" if self.module_.training else "validation loss"):
                return super().get_loss(*args, **kwargs)

        def train_step_single(self, batch, **fit_params):
            with clock.part("train_step_single"):
                return super().train_step_single(batch, **fit_params)

        def train_step(self, batch, **fit_params):
            with clock.part("train_step"):
                return super().train_step(batch, **fit_params)

        def notify(self, method_name, **cb_kwargs):
            if method_name == "on_epoch_begin":
                clock.on = len(self.history) >= 1  # the first epoch warms up
                clock.epoch_start = time.perf_counter()
            with clock.part("callbacks"):
                out = super().notify(method_name, **cb_kwargs)
            if method_name == "on_epoch_end" and clock.on:
                clock.seconds["epoch"] += time.perf_counter() - clock.epoch_start
                clock.epochs += 1
                clock.on = False  # until the next epoch begins
            return out

    params = seg.get_params(deep=False)
    augment = params.get("augment", True)
    if augment is not False:
        params["augment"] = clock.timed("augmentation", flip_rotate if augment is True else augment)
    return Profiled(**params)


def breakdown(clock: Clock) -> dict:
    """The clock's counts as the documented parts, per timed epoch."""
    s = defaultdict(float, {k: v / clock.epochs for k, v in clock.seconds.items()})
    parts = {
        "forward": s["forward"],
        "loss": s["loss"],
        "backward": s["train_step_single"] - s["forward"] - s["loss"],
        "optimizer": s["train_step"] - s["train_step_single"],
        "patches": s["data"] - s["augmentation"] - s["weight maps"],
        "augmentation": s["augmentation"],
        "weight maps": s["weight maps"],
        "validation": s["validation data"] + s["validation forward"] + s["validation loss"],
        "callbacks": s["callbacks"],
    }
    parts["other"] = s["epoch"] - sum(parts.values())
    return parts


def profile(task: str, recipe: str, epochs: int) -> dict:
    X, y = LOADERS[task]()
    torch.manual_seed(0)
    clock = Clock()
    seg = profiled(segmenter(task, recipe, max_epochs=epochs, verbose=0, random_state=0), clock)
    seg.fit(X, y)
    parts = breakdown(clock)
    train_windows = training_windows(seg.history[-1])
    return {
        "images": len(X),
        "epochs_timed": clock.epochs,
        "epoch_seconds": clock.seconds["epoch"] / clock.epochs,
        "autocast": seg.autocast,
        "training_windows_per_epoch": train_windows,
        "parts_seconds": parts,
    }


def table(results: dict) -> str:
    head = "| preset | epoch | " + " | ".join(PARTS) + " |"
    lines = [head, "|" + "---|" * (len(PARTS) + 2)]
    for key, rec in results.items():
        total = rec["epoch_seconds"]
        cells = [f"{100 * rec['parts_seconds'][p] / total:.0f} %" for p in PARTS]
        lines.append(f"| {key} | {total:.1f} s | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=["nuclei:unet", "blood-cells:fast", "em:fast"]
    )
    parser.add_argument("--epochs", type=int, default=3, help="the first one is not timed")
    parser.add_argument("--table", action="store_true", help="print the docs table and exit")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first one warms up)")
    if not args.table:
        for key in args.presets:
            task, _, recipe = key.partition(":")
            figures = profile(task, recipe or None, args.epochs)
            update(RESULTS_FILE, key, figures)
            print(key, f"{figures['epoch_seconds']:.1f} s per epoch", flush=True)
    print(table(load(RESULTS_FILE)))


if __name__ == "__main__":
    main()
