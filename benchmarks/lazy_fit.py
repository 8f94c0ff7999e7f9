"""Training on a slide larger than one wants in memory: ``fit`` from Zarr against ``fit``
on the same arrays in memory.

    python benchmarks/lazy_fit.py [--size 8192] [--patches 48]

Builds (once, in a temporary folder) a ``--size`` x ``--size`` mosaic of 256 x 256 crops
of the DSB2018 training images and their instance masks (``slides.build_mosaic``), as
Zarr arrays in 2048- and 512-pixel chunks. Then, each in a fresh child process so that
peak memory is its own, one epoch of the ``nuclei`` recipe (``target="distance"``,
percentile normalisation, 256-pixel patches, batches of 8) drawing ``--patches`` patches
from the one slide, with the same seed:

- ``memory``: image and mask read into numpy arrays first, then ``fit``;
- ``zarr-2048`` / ``zarr-512``: ``fit`` on the Zarr arrays (each patch reads its window).

Reports the seconds before the first batch (checks, percentiles, class maps in memory or
the objects' bounding boxes from Zarr), seconds per batch, peak resident memory, and
whether the trained weights equal those of the ``memory`` run bit for bit. Writes
``benchmarks/results/lazy_fit.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _record import update
from skorch.callbacks import Callback
from slides import DATA, build_mosaic, peak_mb, run_child

RESULTS = Path(__file__).parent / "results" / "lazy_fit.json"
BATCH = 8


class FirstBatch(Callback):
    """Notes when the first training batch begins."""

    at = None

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if self.at is None:
            self.at = time.perf_counter()


def child(args: argparse.Namespace) -> None:
    import zarr

    from skunet.presets import nuclei_segmenter

    start = time.perf_counter()
    chunk = "2048" if args.run == "memory" else args.run.split("-")[1]
    image = zarr.open_array(Path(args.workdir) / f"image-{chunk}.zarr", mode="r")
    labels = zarr.open_array(Path(args.workdir) / f"labels-{chunk}.zarr", mode="r")
    if args.run == "memory":
        image, labels = image[:], labels[:]
    first = FirstBatch()
    seg = nuclei_segmenter(
        max_epochs=1,
        patches_per_image=args.patches,
        batch_size=BATCH,
        train_split=None,
        random_state=0,
        verbose=0,
        callbacks=[("first_batch", first)],
    )
    seg.fit([image], [labels])
    end = time.perf_counter()
    torch.save(seg.module_.state_dict(), Path(args.workdir) / f"{args.run}.pt")
    batches = -(-args.patches // BATCH)
    print(
        json.dumps(
            {
                "seconds_before_first_batch": round(first.at - start, 1),
                "seconds_per_batch": round((end - first.at) / batches, 2),
                "peak_mb": round(peak_mb()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--patches", type=int, default=48)
    parser.add_argument("--runs", default="memory,zarr-2048,zarr-512")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for chunk in (2048, 512):
            build_mosaic(Path(tmp) / f"image-{chunk}.zarr", args.size, args.data, chunk=chunk)
            build_mosaic(
                Path(tmp) / f"labels-{chunk}.zarr", args.size, args.data, True, chunk=chunk
            )
        print(f"mosaics built in {time.perf_counter() - start:.0f} s", flush=True)
        runs = {}
        for run in args.runs.split(","):
            command = [sys.executable, __file__, "--run", run, "--workdir", tmp,
                       "--patches", str(args.patches)]  # fmt: skip
            runs[run] = run_child(run, command)
        reference = torch.load(Path(tmp) / "memory.pt") if "memory" in runs else None
        for run in runs:
            if reference is not None and run != "memory":
                state = torch.load(Path(tmp) / f"{run}.pt")
                same = all(torch.equal(reference[k], state[k]) for k in reference)
                runs[run]["weights_equal_memory"] = same
    figures = {
        "size": args.size,
        "megapixels": args.size**2 / 1e6,
        "recipe": "nuclei_segmenter() (distance target, percentile, 256 px patches)",
        "patches": args.patches,
        "batch_size": BATCH,
        "runs": runs,
    }
    update(RESULTS, f"{args.size} x {args.size}", figures)
    print(f"written: {RESULTS}")
    print(json.dumps(figures, indent=1, default=np.asarray))


if __name__ == "__main__":
    main()
