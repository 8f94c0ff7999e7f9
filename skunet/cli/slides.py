"""``skunet predict`` of a Zarr / OME-Zarr image: block by block into an OME-Zarr output,
on this machine or a Dask cluster (``--scheduler``), resuming an interrupted run."""

from __future__ import annotations

import argparse
import contextlib
import shutil
from pathlib import Path

__all__ = ["is_zarr", "predict_zarr"]


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` names a Zarr store (a ``.zarr`` folder)."""
    return Path(path).suffix.lower() == ".zarr"


@contextlib.contextmanager
def _scheduler(address: str | None):
    if address is None:
        yield
        return
    from distributed import Client

    with Client(address):
        yield


def predict_zarr(args: argparse.Namespace, seg, source: Path) -> int:
    """Predict the image at ``source`` into the OME-Zarr image ``args.out``."""
    import zarr

    from ..lazy import create_zarr_image, open_zarr_image
    from ..prediction.blocks import RECORD
    from ..prediction.instance_stash import Stash

    out = Path(args.out)
    if not is_zarr(out):
        raise ValueError(f"--out {str(out)!r}: a Zarr input is predicted into a .zarr path")
    image = open_zarr_image(source)
    shape = tuple(image.shape[:2])
    chunks = (min(args.chunks, shape[0]), min(args.chunks, shape[1]))
    dtype = "int64" if args.instances else "uint8"
    array = None
    if out.exists() and not args.overwrite:
        try:  # a run of this job, interrupted: resume it
            array = zarr.open_group(str(out), mode="r+")["0"]
        except (KeyError, FileNotFoundError, zarr.errors.NodeNotFoundError):
            array = None
        if array is None or RECORD not in array.attrs:
            raise FileExistsError(f"{str(out)!r} exists; pass --overwrite to replace it")
        done = len(array.attrs[RECORD]["done"])
        stash = Stash.of(array)
        if stash is not None and stash.exists():  # instances' first passes, kept
            done = f"{done} block(s) were finished, {len(stash.done)} first pass(es) are kept"
        else:
            done = f"{done} block(s) were finished"
        print(f"resuming {out}: {done}")
    elif out.exists():
        shutil.rmtree(out)
    if array is None:
        array = create_zarr_image(out, shape, chunks, dtype, axes="yx")
    with _scheduler(args.scheduler):
        if args.instances:
            seg.predict_instances(image, out=array)
        else:
            seg.predict(image, out=array)
    kind = "instance labels" if args.instances else "classes"
    print(f"wrote the {kind} of {source} ({shape[0]} x {shape[1]}) to {out}")
    return 0
