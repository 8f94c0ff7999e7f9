"""Block-wise prediction of images larger than memory (Dask in, Dask or Zarr out).

The output is cut into blocks (the input's chunks, or the Zarr output's). Each block is
one task: it reads the region of the image that the tiles over it need, runs those tiles
and blends them. The tiles are those of the *whole image's* grid (:mod:`skunet.prediction.inference`
tiles an image in memory on the same grid, with the same Gaussian weights, added in the
same order), so every pixel is the same weighted mean of the same tiles whatever the
block size: block-wise probabilities equal the in-memory ones to float rounding. The
price is that tiles crossing a block border run once for each block they reach, so
blocks should be much larger than a tile (the default tile of an image larger than two
of them a side is half the largest, :func:`~skunet.prediction.inference.tile_input_size`).

The network is one key of the task graph, so a Dask cluster sends it once to each
worker, not with every block. With ``out=`` (a Zarr array), each finished block is
recorded in the array's attributes; a prediction killed part-way and run again into the
same array recomputes only the blocks not recorded (a half-written one included).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..lazy import as_lazy_image, check_finite, lazy_percentiles
from ..preprocessing import PERCENTILES, scale_range
from ..tiling import add_tile, blend_weights, reflect_indices, tile_starts
from .inference import tile_batches

__all__ = ["BlockJob", "block_probabilities", "chunk_grid"]

WAVE = 2 * (os.cpu_count() or 2)
"""Blocks computed (and then recorded as finished) at a time, without a Dask cluster."""

RECORD = "skunet_blocks"
"""Attribute of a Zarr output that lists its finished blocks (and what wrote them)."""


def chunk_grid(out: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The chunk grid of a Zarr array's last two axes, in Dask's ``chunks`` form.

    >>> import zarr
    >>> chunk_grid(zarr.create_array({}, shape=(2, 5, 4), chunks=(1, 2, 4), dtype="u1"))
    ((2, 2, 1), (4,))
    """
    grid = []
    for length, chunk in zip(out.shape[-2:], out.chunks[-2:]):
        grid.append((chunk,) * (length // chunk) + ((length % chunk,) if length % chunk else ()))
    return grid[0], grid[1]


def _tiles_over(starts: list[int], region: int, length: int, lo: int, hi: int) -> list[int]:
    return [s for s in starts if s < hi and min(s + region, length) > lo]


def block_probabilities(
    predictor, image: np.ndarray, origin: tuple[int, int], shape: tuple[int, int],
    block: tuple[int, int, int, int], scale: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Compact probabilities ``(K', r1 - r0, c1 - c0)`` of the block ``(r0, r1, c0, c1)``
    of an image of ``shape`` (H, W), of which ``image`` ``(C, h, w)`` is the region
    starting at ``origin`` that the block's tiles read (:meth:`BlockJob.slab`).

    ``scale`` ``(2, C)``: the whole image's percentiles that a percentile model maps to
    0 and 1 (as :func:`~skunet.preprocessing.percentile_normalize`).
    """
    g, s = predictor.geometry, predictor.settings
    tile, region = predictor.tile_sizes(shape)
    c = g.context
    (h, w), (r0, r1, c0, c1) = shape, block
    if scale is not None:
        image = scale_range(image, *scale)
    rows = _tiles_over(tile_starts(h, region, s.tile_overlap), region, h, r0, r1)
    cols = _tiles_over(tile_starts(w, region, s.tile_overlap), region, w, c0, c1)
    weights = blend_weights(region, s.blend)
    tiles = [(r, q) for r in rows for q in cols]

    def read(t: tuple[int, int]) -> np.ndarray:
        r, q = t
        return image[
            :,
            reflect_indices(r - c, tile, h)[:, None] - origin[0],
            reflect_indices(q - c, tile, w)[None, :] - origin[1],
        ]

    acc = wsum = None
    for batch, probs in tile_batches(predictor.module, tiles, read, tile, g, s):
        if acc is None:
            acc = np.zeros((probs.shape[1], r1 - r0, c1 - c0), dtype=np.float32)
            wsum = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
        for t, p in zip(batch, probs):
            add_tile(acc, wsum, p, weights, t, (r0, c0), shape)
    return acc / wsum


class BlockJob:
    """One lazy image's block-wise prediction with one predictor.

    Parameters
    ----------
    predictor : Predictor
    X : Dask or Zarr array ``(H, W)`` or ``(H, W, C)``
    chunks : tuple of two tuples of ints, optional
        Block sides along rows and columns (Dask's ``chunks`` form); default the input's.
    """

    def __init__(self, predictor, X: Any, chunks: tuple | None = None) -> None:
        import dask

        if predictor.postprocess is not None:
            raise ValueError(
                "this model has a postprocess, which needs the whole class map; block-wise "
                "prediction (a Dask or Zarr input, or out=) takes models without one"
            )
        self.image = as_lazy_image(X, predictor.n_channels)
        check_finite(self.image)  # before any block is computed or written
        self.shape = self.image.shape[:2]
        self.chunks = tuple(chunks) if chunks is not None else self.image.chunks[:2]
        # what a worker needs, as one key of the graph: sent once per worker
        settings = dataclasses.replace(predictor.settings, progress=False)
        self.predictor = dataclasses.replace(predictor, settings=settings)
        self._predictor_key = dask.delayed(self.predictor, name=f"skunet-net-{uuid.uuid4().hex}")
        self.scale = None
        if predictor.normalize == "percentile":
            self.scale = lazy_percentiles(self.image, PERCENTILES)
        region = predictor.tile_sizes()[1]
        self.whole = self.shape[0] <= region and self.shape[1] <= region

    # ------------------------------------------------------------------ geometry
    def blocks(self) -> list[tuple[tuple[int, int], tuple[int, int, int, int]]]:
        """``((i, j), (r0, r1, c0, c1))`` of every block, row-major."""
        edges = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in self.chunks]
        return [
            (
                (i, j),
                (int(edges[0][i]), int(edges[0][i + 1]), int(edges[1][j]), int(edges[1][j + 1])),
            )
            for i in range(len(self.chunks[0]))
            for j in range(len(self.chunks[1]))
        ]

    def slab(self, block: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The image region ``(top, bottom, left, right)`` the block's tiles read."""
        tile, region = self.predictor.tile_sizes(self.shape)
        c = self.predictor.geometry.context
        (h, w), s = self.shape, self.predictor.settings
        r0, r1, c0, c1 = block
        spans = []
        for length, lo, hi in ((h, r0, r1), (w, c0, c1)):
            starts = _tiles_over(
                tile_starts(length, region, s.tile_overlap), region, length, lo, hi
            )
            idx = np.concatenate([reflect_indices(t - c, tile, length) for t in starts])
            spans += [int(idx.min()), int(idx.max()) + 1]
        return spans[0], spans[1], spans[2], spans[3]

    # ------------------------------------------------------------------ tasks
    def probability_task(self, block: tuple[int, int, int, int]):
        """The delayed compact probabilities of a region ``(r0, r1, c0, c1)``."""
        return self._task(block, _identity)

    def _task(self, block, finalize: Callable[[np.ndarray], np.ndarray]):
        """A delayed ``finalize(compact probabilities)`` of one block."""
        import dask

        top, bottom, left, right = self.slab(block)
        region = self.image[top:bottom, left:right]
        return dask.delayed(_run_block, pure=True)(
            self._predictor_key, region, (top, left), self.shape, block, self.scale, finalize
        )

    def _whole_task(self, finalize):
        import dask

        return dask.delayed(_run_whole, pure=True)(self._predictor_key, self.image, finalize)

    def array(self, finalize: Callable[[np.ndarray], np.ndarray], channels: int | None, dtype):
        """The prediction as a Dask array: ``(channels, H, W)``, or ``(H, W)`` when
        ``channels`` is None."""
        import dask.array as da

        lead = () if channels is None else (channels,)
        if self.whole:
            return da.from_delayed(self._whole_task(finalize), (*lead, *self.shape), dtype)
        rows = []
        for (_, j), block in self.blocks():
            if j == 0:
                rows.append([])
            r0, r1, c0, c1 = block
            task = self._task(block, finalize)
            rows[-1].append(da.from_delayed(task, (*lead, r1 - r0, c1 - c0), dtype))
        return da.block(rows)

    # ------------------------------------------------------------------ Zarr output
    def fingerprint(self, kind: str) -> str:
        """What a Zarr output was written by: the network's weights, the prediction
        settings, the input's shape and dtype, and ``kind``."""
        digest = hashlib.sha256()
        for tensor in self.predictor.module.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        p = self.predictor
        settings = {
            "kind": kind, "shape": list(self.image.shape), "dtype": str(self.image.dtype),
            "tile": p.tile_sizes(self.shape), "overlap": p.settings.tile_overlap,
            "tta": p.settings.tta, "blend": p.settings.blend, "normalize": p.normalize,
            "chunks": [list(c) for c in self.chunks],
        }  # fmt: skip
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def claim(self, out, kind: str, lead: tuple = ()) -> tuple[str, set | None]:
        """Check that the Zarr array ``out`` fits this job's ``kind`` of prediction and
        holds no other, and record the job in it: ``(fingerprint, finished blocks)``,
        the blocks None when ``out`` recorded no run before."""
        expected = (*lead, *self.shape)
        if tuple(out.shape) != expected:
            raise ValueError(f"out has shape {tuple(out.shape)}; this prediction needs {expected}")
        fingerprint = self.fingerprint(kind)
        record = dict(out.attrs).get(RECORD)
        if record is not None and record.get("job") != fingerprint:
            raise ValueError(
                "out holds another prediction (another model, input or settings wrote it); "
                "pass a new array, or delete its attribute "
                f"{RECORD!r} to overwrite it"
            )
        if not record or not record["done"]:
            out.attrs[RECORD] = {"job": fingerprint, "done": []}
        return fingerprint, None if record is None else {tuple(ij) for ij in record["done"]}

    def store(self, out, kind: str, finalize, channels: int | None) -> None:
        """Write the prediction into the Zarr array ``out``, block by block, skipping the
        blocks an earlier run of the same job recorded as finished."""
        import dask

        lead = () if channels is None else (channels,)
        fingerprint, done = self.claim(out, kind, lead)
        done = done or set()
        if self.whole:
            everything = (0, self.shape[0], 0, self.shape[1])
            tasks = {(0, 0): (everything, self._whole_task(finalize))}
        else:
            tasks = {ij: (b, self._task(b, finalize)) for ij, b in self.blocks()}
        writes = {
            ij: dask.delayed(write_block, pure=False)(out, task, block, len(lead))
            for ij, (block, task) in tasks.items()
            if ij not in done
        }
        run_recording(out, fingerprint, done, writes)


def _identity(p: np.ndarray) -> np.ndarray:
    return p


def _run_block(predictor, region, origin, shape, block, scale, finalize):
    image = np.moveaxis(np.asarray(region), -1, 0)
    predictor.module.eval()
    with torch.inference_mode():
        return finalize(block_probabilities(predictor, image, origin, shape, block, scale))


def _run_whole(predictor, image, finalize):
    return predictor.probabilities(predictor.check_images([np.asarray(image)]), finalize)[0]


def write_block(out, data: np.ndarray, block, leading: int) -> None:
    """Write ``data`` into the block ``(r0, r1, c0, c1)`` of ``out`` (after ``leading``
    whole axes)."""
    r0, r1, c0, c1 = block
    out[(slice(None),) * leading + (slice(r0, r1), slice(c0, c1))] = data


def run_recording(out, fingerprint: str, done: set, writes: dict) -> None:
    """Compute the writes, recording finished blocks in ``out``'s attributes (on a
    Dask cluster as each finishes; with the local scheduler in waves of a few blocks)."""
    import dask

    def record() -> None:
        out.attrs[RECORD] = {"job": fingerprint, "done": sorted(list(ij) for ij in done)}

    try:
        from distributed import as_completed, get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        futures = dict(zip(client.compute(list(writes.values())), writes))
        last = time.monotonic()
        for future in as_completed(futures):
            future.result()
            done.add(futures[future])
            if time.monotonic() - last > 2 or len(done) == len(futures):
                record()
                last = time.monotonic()
        record()
        return
    items = list(writes.items())
    for k in range(0, len(items), WAVE):
        dask.compute(*[w for _, w in items[k : k + WAVE]])
        done.update(ij for ij, _ in items[k : k + WAVE])
        record()
