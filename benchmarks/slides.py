"""Whole-slide prediction: a mosaic of DSB2018 images, block by block from Zarr into Zarr.

    python benchmarks/slides.py [--size 16384] [--runs process,cluster1,cluster2]

Builds (once, in a temporary folder) a ``--size`` x ``--size`` uint8 mosaic of 256 x 256
crops of the DSB2018 training images as a Zarr array in 2048-pixel chunks, then, each in
a fresh child process so that peak memory is its own:

- ``process``: ``predict_instances(slide, out=zarr)`` with Dask's threads in one process;
- ``cluster1`` / ``cluster2``: the same on a ``LocalCluster`` of 1 / 2 worker processes
  (cores split between them);

and reports megapixels per second and peak resident memory (the process; each worker).
Then the equality figures on a 2048 x 2048 corner, which fits in memory: the largest
difference of block-wise ``predict_proba`` from the in-memory one at several block sizes,
and whether block-wise instances equal the in-memory ones up to numbering.

The model is the pretrained ``nuclei`` model without flip averaging (``--tta`` for it).
Writes ``benchmarks/results/slides.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import update

RESULTS = Path(__file__).parent / "results" / "slides.json"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018" / "train"
CHUNK = 2048


def build_mosaic(
    path: Path, size: int, data: Path, labels: bool = False, chunk: int = CHUNK
) -> None:
    """The mosaic as a Zarr array, written one chunk at a time: the images' first channel
    (uint8), or with ``labels`` their instance masks (int32, ids made unique)."""
    import zarr

    from skunet.datasets import read_image

    files = sorted((data / "images").iterdir())
    images = [im for im in map(read_image, files) if min(im.shape[:2]) >= 256]
    if labels:
        names = [f.name for f in files if min(read_image(f).shape[:2]) >= 256]
        images = [read_image(data / "masks" / name) for name in names]
    crops = [im[:256, :256] if im.ndim == 2 else im[:256, :256, 0] for im in images]
    dtype = "i4" if labels else "u1"
    slide = zarr.create_array(path, shape=(size, size), chunks=(chunk, chunk), dtype=dtype)
    per = CHUNK // 256
    k = offset = 0
    for r in range(0, size, CHUNK):
        for c in range(0, size, CHUNK):
            h, w = min(CHUNK, size - r), min(CHUNK, size - c)
            rows = []
            for _ in range(per):
                row = []
                for _ in range(per):
                    crop = crops[(k := k + 1) % len(crops)].astype(dtype)
                    if labels:  # the crop's ids after those of the crops before it
                        crop = np.where(crop > 0, crop + offset, 0)
                        offset = max(offset, int(crop.max()))
                    row.append(crop)
                rows.append(np.hstack(row))
            slide[r : r + h, c : c + w] = np.vstack(rows)[:h, :w]


def run_child(run: str, command: list[str]) -> dict:
    """Run one measurement in a fresh process (its peak memory its own); the figures it
    printed as JSON on its last line."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{run} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{run}: {figures}", flush=True)
    return figures


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One run: predict the mosaic's instances into a new Zarr array; print its figures."""
    import dask.array as da
    import zarr

    from skunet.lazy import create_zarr_image
    from skunet.pretrained import load_model

    seg = load_model("nuclei", tta=args.tta)
    slide = da.from_zarr(zarr.open_array(args.mosaic, mode="r"))
    out = create_zarr_image(
        args.workdir / f"{args.run}.zarr", slide.shape, (CHUNK, CHUNK), "int64", "yx"
    )
    workers = {}
    start = time.perf_counter()
    if args.run == "process":
        seg.predict_instances(slide, out=out)
    else:
        from distributed import Client, LocalCluster

        n = int(args.run[-1])
        with (
            LocalCluster(
                n_workers=n, threads_per_worker=max(1, 2 // n), processes=True,
                dashboard_address=None, memory_limit=None,
            ) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            seg.predict_instances(slide, out=out)
            workers = client.run(peak_mb)
    seconds = time.perf_counter() - start
    n_objects = int(da.from_zarr(out).max().compute())
    print(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "megapixels_per_second": round(slide.size / 1e6 / seconds, 3),
                "peak_mb": round(peak_mb()),
                "worker_peak_mb": sorted(round(v) for v in workers.values()),
                "objects": n_objects,
            }
        )
    )


def equality(mosaic: str, tta: bool) -> dict:
    """Block-wise against in-memory on the mosaic's 2048 x 2048 corner."""
    import dask.array as da
    import zarr

    from skunet.pretrained import load_model

    seg = load_model("nuclei", tta=tta, tile_size=512)
    corner = zarr.open_array(mosaic, mode="r")[:CHUNK, :CHUNK]
    proba = seg.predict_proba([corner])[0]
    labels = seg.predict_instances([corner])[0]
    figures = {"tile_size": 512, "objects": int(labels.max()), "blocks": {}}
    for block in (300, 1000, 2048):
        lazy = da.from_array(corner, chunks=block)
        got = seg.predict_proba(lazy).compute()
        ids = seg.predict_instances(lazy).compute()
        pairs = np.unique(np.stack([labels.ravel(), ids.ravel()]), axis=1)
        same = len(pairs[0]) == len(np.unique(labels)) == len(np.unique(ids))
        figures["blocks"][block] = {
            "max_abs_difference": float(np.abs(got - proba).max()),
            "instances_equal_up_to_numbering": bool(same),
        }
        print(f"blocks of {block}: {figures['blocks'][block]}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--runs", default="process,cluster1,cluster2")
    parser.add_argument("--tta", action="store_true", help="average the flips (4x the work)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--no-equality", action="store_true")
    parser.add_argument("--name", help="the record's key (default: the size)")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--mosaic", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        mosaic = Path(tmp) / "mosaic.zarr"
        start = time.perf_counter()
        build_mosaic(mosaic, args.size, args.data)
        print(f"mosaic {args.size} x {args.size} built in {time.perf_counter() - start:.0f} s")
        runs = {}
        for run in args.runs.split(","):
            command = [sys.executable, __file__, "--run", run, "--mosaic", str(mosaic),
                       "--workdir", tmp] + (["--tta"] if args.tta else [])  # fmt: skip
            runs[run] = run_child(run, command)
        figures = {
            "size": args.size,
            "megapixels": args.size**2 / 1e6,
            "model": "nuclei (pretrained)",
            "tta": args.tta,
            "chunk": CHUNK,
            "runs": runs,
        }
        if not args.no_equality:
            figures["equality_2048"] = equality(str(mosaic), args.tta)
    key = args.name or f"{args.size} x {args.size}"
    update(RESULTS, key, figures)
    print(f"written: {RESULTS} [{key}]")


if __name__ == "__main__":
    main()
