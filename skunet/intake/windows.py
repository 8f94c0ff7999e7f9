"""Training on images larger than memory: Dask and Zarr images and masks, read window by
window.

``fit`` takes, beside arrays in memory, Dask or Zarr images ``(H, W)`` / ``(H, W, C)``
and masks ``(H, W)`` (:mod:`skunet.intake.validation` checks them: shapes and dtypes without
reading a pixel, values in one streamed pass). A :class:`LazyImage` and a
:class:`LazyClasses` stand in for the float32 image and the class map in memory: the
training patches (:func:`skunet.tiling.window`) read only the region each random window
covers, mirrored at the image's borders as in memory.

Both are exact: a window of a :class:`LazyImage` equals the same window of the image
converted in memory (a percentile model's scale is the whole image's exact percentiles,
:func:`~skunet.lazy.lazy_percentiles`), and a window of a :class:`LazyClasses` equals the
same window of the class map the target derives from the whole mask. Targets whose
classes depend on a few pixels around each pixel (``"mask"``: none, ``"boundary"``: 1;
their :class:`~skunet.targets.Target` ``reach``) read that margin; targets whose classes
depend on whole objects (``"distance"``: each object's normalised distance transform)
read the bounding boxes of the objects in the window, found in one pass over the mask
before training. So ``fit`` on the lazy arrays trains exactly as on the arrays in memory
(tested: equal weights), holding only the windows of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["LazyClasses", "LazyImage", "as_dask", "object_boxes", "read", "value_range"]


def as_dask(X: Any):
    """A Dask array of a Dask or Zarr array (Zarr arrays read nothing until computed)."""
    import dask.array as da

    return X if isinstance(X, da.Array) else da.from_zarr(X)


def read(array, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``array[r0:r1, c0:c1]`` of a Dask array, in memory, computed in this thread (a
    training step never waits on a cluster)."""
    return np.asarray(array[r0:r1, c0:c1].compute(scheduler="synchronous"))


def value_range(array) -> tuple[Any, Any]:
    """``(min, max)`` of an array in memory or a Dask array (one pass, block by block)."""
    if isinstance(array, np.ndarray):
        return array.min(), array.max()
    import dask

    return dask.compute(array.min(), array.max(), scheduler="threads")


class LazyImage:
    """A checked Dask image ``(H, W, C)`` that reads float32 ``(C, h, w)`` regions.

    Parameters
    ----------
    image : dask array ``(H, W, C)``
    convert : callable
        Raw pixels to float32 (elementwise: :func:`~skunet.intake.validation.as_float32`).
    scale : callable, optional
        Applied to each converted ``(C, h, w)`` region (a percentile model's
        :func:`~skunet.preprocessing.scale_range` with the whole image's percentiles).
    """

    ndim = 3

    def __init__(self, image, convert: Callable, scale: Callable | None = None) -> None:
        self.image = image
        self.convert = convert
        self.scale = scale

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w, c = self.image.shape
        return c, h, w

    def pixels(self):
        """The converted (unscaled) pixels as a lazy float32 ``(H, W, C)`` array."""
        return self.image.map_blocks(self.convert, dtype=np.float32)

    def scaled(self, scale: Callable) -> LazyImage:
        """The same image with ``scale`` applied to every region read."""
        return LazyImage(self.image, self.convert, scale)

    def region(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Float32 ``(C, r1 - r0, c1 - c0)`` pixels of a region inside the image."""
        x = self.convert(np.moveaxis(read(self.image, r0, r1, c0, c1), -1, 0))
        if self.scale is not None:
            x = self.scale(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def __repr__(self) -> str:
        return f"LazyImage(shape={self.shape}, chunks={self.image.chunksize})"


def _block_boxes(block: np.ndarray, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    ids, inverse = np.unique(block, return_inverse=True)
    slices = ndi.find_objects(inverse.reshape(block.shape) + 1)
    boxes = np.array(
        [[s[0].start + top, s[0].stop + top, s[1].start + left, s[1].stop + left] for s in slices],
        dtype=np.int64,
    ).reshape(-1, 4)
    keep = ids > 0
    return ids[keep].astype(np.int64), boxes[keep]


def object_boxes(labels) -> tuple[np.ndarray, np.ndarray]:
    """Sorted object ids (> 0) of a 2-D label image in memory or as a Dask array, and
    their bounding boxes ``(N, 4)`` as ``(r0, r1, c0, c1)``, found block by block.

    >>> lab = np.array([[0, 2, 2], [5, 0, 2]])
    >>> ids, boxes = object_boxes(lab)
    >>> ids.tolist(), boxes.tolist()
    ([2, 5], [[0, 2, 1, 3], [1, 2, 0, 1]])
    """
    if isinstance(labels, np.ndarray):
        return _block_boxes(labels, 0, 0)
    import dask

    edges = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in labels.chunks]
    parts = dask.compute(
        *[
            dask.delayed(_block_boxes)(labels.blocks[i, j], int(edges[0][i]), int(edges[1][j]))
            for i in range(len(labels.chunks[0]))
            for j in range(len(labels.chunks[1]))
        ],
        scheduler="threads",
    )
    ids = np.concatenate([p[0] for p in parts])
    boxes = np.concatenate([p[1] for p in parts])
    order = np.argsort(ids, kind="stable")
    ids, boxes = ids[order], boxes[order]
    unique, starts = np.unique(ids, return_index=True)
    if not len(unique):
        return unique, boxes
    merged = np.stack(
        [
            np.minimum.reduceat(boxes[:, 0], starts),
            np.maximum.reduceat(boxes[:, 1], starts),
            np.minimum.reduceat(boxes[:, 2], starts),
            np.maximum.reduceat(boxes[:, 3], starts),
        ],
        axis=1,
    )
    return unique, merged


class LazyClasses:
    """The class map of a Dask label image ``(H, W)``, derived region by region.

    Parameters
    ----------
    labels : dask array ``(H, W)``
        A checked mask.
    encode : callable
        ``labels (h, w) -> classes (h, w)`` on a mask in memory (the target's encoding).
    reach : int or None
        Pixels of labels around a pixel its class depends on; None: its whole object
        (the bounding boxes of the window's objects are read, and the labels renumbered
        ``1..n`` for ``encode``, which must then depend on the partition only).
    """

    ndim = 2

    def __init__(self, labels, encode: Callable, reach: int | None) -> None:
        self.labels = labels
        self.encode = encode
        self.reach = reach
        self.ids, self.boxes = object_boxes(labels) if reach is None else (None, None)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape)

    def _extent(self, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int, int, int]:
        """The region whose labels decide the classes of ``[r0:r1, c0:c1]``."""
        h, w = self.shape
        if self.reach is not None:
            m = self.reach
            return max(r0 - m, 0), min(r1 + m, h), max(c0 - m, 0), min(c1 + m, w)
        present = np.unique(read(self.labels, r0, r1, c0, c1))
        boxes = self.boxes[np.searchsorted(self.ids, present[present > 0])]
        if len(boxes):
            r0, r1 = min(r0, boxes[:, 0].min()), max(r1, boxes[:, 1].max())
            c0, c1 = min(c0, boxes[:, 2].min()), max(c1, boxes[:, 3].max())
        # each object's encoding looks one pixel around its box
        return max(r0 - 1, 0), min(r1 + 1, h), max(c0 - 1, 0), min(c1 + 1, w)

    def region(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Classes of ``[r0:r1, c0:c1]``, a region inside the image."""
        e0, e1, f0, f1 = self._extent(r0, r1, c0, c1)
        labels = read(self.labels, e0, e1, f0, f1)
        if self.reach is None:  # objects numbered 1..n: encodings index by label;
            # pixels not annotated (< 0) keep their mark for the encoding to skip
            ids, inverse = np.unique(np.maximum(labels, 0), return_inverse=True)
            numbered = inverse.reshape(labels.shape) + (0 if ids[0] == 0 else 1)
            labels = np.where(labels < 0, labels, numbered)
        return self.encode(labels)[r0 - e0 : r1 - e0, c0 - f0 : c1 - f0]

    def __repr__(self) -> str:
        return f"LazyClasses(shape={self.shape}, reach={self.reach})"
