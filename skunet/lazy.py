"""Images larger than memory: Dask and Zarr arrays, checked and normalised lazily.

A *lazy image* is one ``(H, W)`` or ``(H, W, C)`` image held as a Dask array or a Zarr
array (any store: a folder, a zip, an OME-Zarr image's level). :func:`as_lazy_image`
checks it without reading its pixels and returns it as a Dask array; the block-wise
prediction (:mod:`skunet.prediction.blocks`) reads only the regions each block needs.

:func:`lazy_percentiles` gives exactly what ``np.percentile`` gives on the image in
memory (linear interpolation between order statistics), reading the image once for
integer images (a histogram of every value) and twice for float images (a coarse
histogram, then the values of the bins that hold the wanted ranks), so that a percentile
model normalises a slide exactly as it would normalise it in memory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = [
    "as_lazy_image",
    "check_finite",
    "create_zarr_image",
    "is_lazy",
    "lazy_percentiles",
    "open_zarr_image",
]

_LAZY_MODULES = ("dask", "zarr")


def is_lazy(X: Any) -> bool:
    """Whether ``X`` is a Dask or Zarr array (checked by type, importing neither).

    >>> is_lazy(np.zeros((4, 4))), is_lazy([np.zeros((4, 4))])
    (False, False)
    """
    module = type(X).__module__.split(".")[0]
    return module in _LAZY_MODULES and hasattr(X, "shape") and hasattr(X, "dtype")


def as_lazy_image(X: Any, n_channels: int, name: str = "X"):
    """``X`` (a Dask or Zarr ``(H, W)`` / ``(H, W, C)`` image) as a 3-D Dask array
    ``(H, W, C)``, checked without reading a pixel.

    Raises
    ------
    TypeError
        ``X`` is not a Dask or Zarr array, or its dtype is not real numbers.
    ValueError
        Wrong dimensionality, an empty side, or not ``n_channels`` channels. (NaN pixels
        are not looked for here, which would read the image: :func:`check_finite`.)
    """
    if not is_lazy(X):
        raise TypeError(f"{name} must be a Dask or Zarr array, got a {type(X).__name__}")
    import dask.array as da

    dtype = np.dtype(X.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b") or np.issubdtype(
        dtype, np.complexfloating
    ):
        raise TypeError(f"{name} has dtype {dtype}; images must be real numbers")
    shape = tuple(X.shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{name} has shape {shape}; a lazy image is one (H, W) or (H, W, C) image "
            "(predict a stack plane by plane)"
        )
    if min(shape) == 0:
        raise ValueError(f"{name} has shape {shape}; images must not be empty")
    channels = 1 if len(shape) == 2 else shape[2]
    if channels != n_channels:
        raise ValueError(
            f"{name} has shape {shape}, i.e. {channels} channel(s); the model was trained "
            f"on {n_channels} (a lazy image is (H, W) or (H, W, C), channels last)"
        )
    image = X if isinstance(X, da.Array) else da.from_zarr(X)
    return image[..., None] if image.ndim == 2 else image.rechunk({2: -1})


def check_finite(image, name: str = "X") -> None:
    """ValueError if the lazy float image ``image`` (a Dask array ``(H, W)`` or
    ``(H, W, C)``) holds a NaN or infinite pixel, naming how many, the first one's
    position and its block.

    The image is read once, block by block (integer images, which cannot hold NaN, are
    not read).

    >>> import dask.array as da
    >>> x = np.zeros((6, 8, 1), np.float32)
    >>> x[4, 5, 0] = np.nan
    >>> check_finite(da.from_array(x, chunks=(3, 4, 1)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: X (shape (6, 8, 1)) has 1 NaN or infinite pixel(s), the first at row 4, ...
    """
    if not np.issubdtype(np.dtype(image.dtype), np.floating):
        return
    counts = (
        np.asarray(
            image.map_blocks(
                lambda b: np.array(b.size - np.isfinite(b).sum()).reshape((1,) * b.ndim),
                chunks=(1,) * image.ndim,
                dtype=np.int64,
            ).compute()
        )
        .reshape(len(image.chunks[0]), len(image.chunks[1]), -1)
        .sum(axis=2)
    )
    bad = int(counts.sum())
    if not bad:
        return
    i, j = (int(k) for k in np.argwhere(counts)[0])
    edges = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in image.chunks[:2]]
    r0, r1, c0, c1 = edges[0][i], edges[0][i + 1], edges[1][j], edges[1][j + 1]
    block = np.asarray(image[r0:r1, c0:c1])
    row, col = (int(v) for v in np.argwhere(~np.isfinite(block))[0][:2])
    raise ValueError(
        f"{name} (shape {tuple(image.shape)}) has {bad} NaN or infinite pixel(s), the first "
        f"at row {r0 + row}, column {c0 + col}, in block ({i}, {j}) (rows {r0}:{r1}, "
        f"columns {c0}:{c1})"
    )


def _blocks(image) -> list:
    return list(image.to_delayed().ravel())


def _compute(function, blocks: list) -> list:
    import dask

    return list(dask.compute(*[dask.delayed(function)(b) for b in blocks]))


def _at_ranks(values: np.ndarray, counts: np.ndarray, ranks: list[int]) -> list[float]:
    """The values at 0-based ``ranks`` of a sorted multiset given as (values, counts)."""
    ends = np.cumsum(counts)
    return [float(values[np.searchsorted(ends, k, side="right")]) for k in ranks]


def _interpolate(order_statistics, n: int, q: float) -> float:
    """``np.percentile``'s linear interpolation at ``q`` of ``n`` sorted values, given
    ``order_statistics(ranks) -> values``."""
    virtual = q / 100 * (n - 1)
    below = int(np.floor(virtual))
    a, b = order_statistics([below, min(below + 1, n - 1)])
    t = virtual - below
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def _integer_statistics(image, channels: int):
    """Order statistics per channel from one histogram of every value (<= 16-bit)."""
    dtype = np.dtype(image.dtype)
    low = 0 if dtype.kind == "b" else int(np.iinfo(dtype).min)
    size = 2 if dtype.kind == "b" else int(np.iinfo(dtype).max) - low + 1

    def histogram(block: np.ndarray) -> np.ndarray:
        values = block.reshape(-1, channels).astype(np.int64) - low
        return np.stack([np.bincount(values[:, c], minlength=size) for c in range(channels)])

    counts = sum(_compute(histogram, _blocks(image)))
    values = np.arange(size) + low
    return [lambda ranks, c=c: _at_ranks(values, counts[c], ranks) for c in range(channels)]


def _float_statistics(plane, ranks: list[int]) -> dict[int, float]:
    """Order statistics of one channel: a histogram of 4096 bins finds the bin of each
    rank, a second pass counts the distinct values of those bins."""
    import dask

    lo, hi = (float(v) for v in dask.compute(plane.min(), plane.max()))
    edges = np.linspace(lo, hi, 4097) if hi > lo else np.array([lo, np.inf])
    ends = np.cumsum(sum(_compute(lambda x: np.histogram(x, bins=edges)[0], _blocks(plane))))
    bin_of = {k: int(np.searchsorted(ends, k, side="right")) for k in ranks}
    bins = sorted(set(bin_of.values()))
    last = len(edges) - 2

    def within(block: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        found = []
        for b in bins:  # np.histogram's bins: half-open, the last one closed
            upper = block <= edges[b + 1] if b == last else block < edges[b + 1]
            found.append(np.unique(block[(block >= edges[b]) & upper], return_counts=True))
        return found

    parts = _compute(within, _blocks(plane))
    out = {}
    for j, b in enumerate(bins):
        values, inverse = np.unique(np.concatenate([p[j][0] for p in parts]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([p[j][1] for p in parts]))
        below = int(ends[b - 1]) if b else 0
        for k, kb in bin_of.items():
            if kb == b:
                out[k] = _at_ranks(values, counts, [k - below])[0]
    return out


def lazy_percentiles(image, percentiles: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(image, percentiles, axis=(0, 1))`` of an ``(H, W, C)`` Dask array,
    float64 ``(len(percentiles), C)``, reading the image block by block.

    >>> import dask.array as da
    >>> im = np.random.default_rng(0).integers(0, 4000, (50, 40, 2)).astype(np.uint16)
    >>> lazy = da.from_array(im, chunks=(16, 16, 2))
    >>> got = lazy_percentiles(lazy, (1, 99.8))
    >>> bool((got == np.percentile(im, (1, 99.8), axis=(0, 1))).all())
    True
    >>> got = lazy_percentiles(lazy.astype(np.float32) / 7, (1, 99.8))
    >>> bool((got == np.percentile(im.astype(np.float32) / 7, (1, 99.8), axis=(0, 1))).all())
    True
    """
    image = image.rechunk({2: -1})
    n = image.shape[0] * image.shape[1]
    channels = image.shape[2]
    dtype = np.dtype(image.dtype)
    out = np.empty((len(percentiles), channels))
    if dtype.kind == "b" or (np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2):
        for c, statistics in enumerate(_integer_statistics(image, channels)):
            out[:, c] = [_interpolate(statistics, n, q) for q in percentiles]
        return out
    for c in range(channels):
        ranks = set()
        for q in percentiles:
            below = int(np.floor(q / 100 * (n - 1)))
            ranks |= {below, min(below + 1, n - 1)}
        found = _float_statistics(image[..., c], sorted(ranks))
        out[:, c] = [
            _interpolate(lambda ks, f=found: [f[k] for k in ks], n, q) for q in percentiles
        ]
    return out


def _ome(attributes: dict) -> dict:
    """The OME-Zarr metadata of a group's attributes (0.5 nests it under ``"ome"``)."""
    return attributes.get("ome", attributes)


def open_zarr_image(path: str | os.PathLike):
    """A Zarr image as a lazy ``(H, W)`` or ``(H, W, C)`` Dask array: a Zarr array, or
    an OME-Zarr image (0.4 or 0.5), whose full-resolution level is taken and whose axes
    are put in that order (channels last; other axes must have one entry).

    Raises
    ------
    FileNotFoundError
        No Zarr array or group at ``path``.
    ValueError
        An OME-Zarr image with a time or z axis of more than one entry.
    """
    import dask.array as da
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
        raise FileNotFoundError(f"no Zarr array or group at {str(path)!r}") from exc
    if isinstance(node, zarr.Array):
        return da.from_zarr(node)
    multiscales = _ome(dict(node.attrs)).get("multiscales")
    if not multiscales:
        raise ValueError(f"{str(path)!r} is a Zarr group but no OME-Zarr image (no multiscales)")
    level = multiscales[0]["datasets"][0]["path"]
    image = da.from_zarr(node[level])
    axes = [a["name"] if isinstance(a, dict) else a for a in multiscales[0].get("axes", [])]
    if not axes:
        return image
    index = []
    for name, size in zip(axes, image.shape):
        if name in ("y", "x", "c") or size == 1:
            index.append(slice(None) if name in ("y", "x", "c") else 0)
        else:
            raise ValueError(
                f"{str(path)!r} has a {name} axis of {size} entries; skunet predicts one "
                "2-D image: take one plane first"
            )
    image = image[tuple(index)]
    kept = [a for a in axes if a in ("y", "x", "c")]
    return image.transpose([kept.index(a) for a in ("y", "x", "c") if a in kept])


def create_zarr_image(
    path: str | os.PathLike, shape: tuple[int, ...], chunks: tuple[int, ...], dtype, axes: str
):
    """A new OME-Zarr 0.5 image (one level, ``axes`` such as ``"yx"`` or ``"cyx"``) at
    ``path``, returned as the Zarr array to fill."""
    import zarr

    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    scale = [{"type": "scale", "scale": [1.0] * len(axes)}]
    types = {"c": "channel", "t": "time"}
    kinds = [{"name": a, "type": types.get(a, "space")} for a in axes]
    datasets = [{"path": "0", "coordinateTransformations": scale}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": kinds, "datasets": datasets}]}
    return array
