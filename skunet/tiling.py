"""Network geometry, reflect-padded windows and crops.

Prediction and training both cut *windows* out of an image: the region whose labels
matter plus ``context`` pixels on every side, mirrored where the window leaves the image.
:class:`Geometry` says how large a window a network needs so that its output covers a
region, for "same" networks (input a multiple of ``size_divisor``, context = the
estimator's ``padding``) and "valid" networks (output smaller than input by a fixed
border on each side, the 2015 paper's overlap-tile strategy).
"""

from __future__ import annotations

import numpy as np
from torch import nn

__all__ = [
    "IGNORE",
    "Geometry",
    "blend_weights",
    "label_window",
    "reflect_indices",
    "tile_starts",
    "window",
]

IGNORE = -1
"""Target value of pixels the losses and metrics skip (padding, mirrored borders)."""


def reflect_indices(start: int, size: int, n: int) -> np.ndarray:
    """Indices ``start .. start+size-1`` mirrored into ``[0, n)`` (numpy's "reflect").

    Works for windows much larger than the image (repeated mirroring).

    >>> reflect_indices(-2, 7, 3).tolist()
    [2, 1, 0, 1, 2, 1, 0]
    """
    idx = np.arange(start, start + size)
    if n == 1:
        return np.zeros(size, dtype=np.intp)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - idx).astype(np.intp)


def window(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Cut ``image[..., top:top+height, left:left+width]``, mirroring outside the image.

    ``image`` may also be a lazy stand-in with a ``region(r0, r1, c0, c1)`` method
    (:mod:`skunet.intake.windows`), of which only the region the window covers is read.

    >>> window(np.arange(3.0)[None, None], 0, -1, 1, 5).tolist()
    [[[1.0, 0.0, 1.0, 2.0, 1.0]]]
    """
    h, w = image.shape[-2:]
    lazy = not isinstance(image, np.ndarray)
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        if lazy:
            return image.region(top, top + height, left, left + width)
        return image[..., top : top + height, left : left + width]
    rows = reflect_indices(top, height, h)
    cols = reflect_indices(left, width, w)
    if lazy:  # the rows and columns the mirrored window takes, read once
        r0, c0 = int(rows.min()), int(cols.min())
        image = image.region(r0, int(rows.max()) + 1, c0, int(cols.max()) + 1)
        rows, cols = rows - r0, cols - c0
    return image[..., rows[:, None], cols[None, :]]


def label_window(
    labels: np.ndarray,
    top: int,
    left: int,
    height: int,
    width: int,
    keep: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Cut a label window as int64, with :data:`IGNORE` outside the image.

    ``keep = (top, left, height, width)``, in window coordinates, additionally marks
    everything outside that region as ignored (the context border of a training patch).

    >>> label_window(np.ones((2, 2), int), -1, 0, 3, 2).tolist()
    [[-1, -1], [1, 1], [1, 1]]
    """
    out = np.full((height, width), IGNORE, dtype=np.int64)
    h, w = labels.shape
    r0, r1 = max(top, 0), min(top + height, h)
    c0, c1 = max(left, 0), min(left + width, w)
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = labels[r0:r1, c0:c1]
    if keep is not None:
        kt, kl, kh, kw = keep
        masked = np.full_like(out, IGNORE)
        masked[kt : kt + kh, kl : kl + kw] = out[kt : kt + kh, kl : kl + kw]
        out = masked
    return out


class Geometry:
    """How large an input window a network needs to cover a region of an image.

    Parameters
    ----------
    module : torch.nn.Module
        A network. ``output_shape(shape)`` (raising ``ValueError`` for sizes it does not
        accept) marks networks whose output differs from the input; otherwise the input
        must be a multiple of ``size_divisor`` (default 32).
    padding : int
        Context pixels mirrored around the region for "same" networks.

    Examples
    --------
    >>> from skunet.models import UNet
    >>> g = Geometry(UNet(padding="valid"), padding=16)
    >>> g.context, g.shrink, g.input_length(388)
    (92, 92, 572)
    >>> g = Geometry(UNet(depth=4), padding=16)
    >>> g.context, g.shrink, g.input_length(250)
    (16, 0, 288)
    """

    def __init__(self, module: nn.Module, padding: int) -> None:
        self.divisor = int(getattr(module, "size_divisor", 32))
        self._output_shape = getattr(module, "output_shape", None)
        self.shrink = 0
        if self._output_shape is not None:
            n = self._smallest_accepted(self.divisor)
            self.shrink = (n - self._output_shape((n, n))[0]) // 2
        self.context = self.shrink if self.shrink > 0 else int(padding)

    def accepts(self, n: int) -> bool:
        """Whether the network takes ``n``-pixel input sides."""
        if self._output_shape is None:
            return n % self.divisor == 0
        try:
            self._output_shape((n, n))
        except ValueError:
            return False
        return True

    def _smallest_accepted(self, n: int) -> int:
        if self._output_shape is None:
            return -(-n // self.divisor) * self.divisor
        while not self.accepts(n):
            n += 1
        return n

    def input_length(self, covered: int) -> int:
        """Smallest input length whose output covers ``covered`` pixels plus context."""
        return self._smallest_accepted(covered + 2 * self.context)

    @property
    def output_offset(self) -> int:
        """Index in the output of the first covered pixel."""
        return self.context - self.shrink

    def nearest_patch_sizes(self, patch_size: int) -> tuple[int | None, int]:
        """Patch sizes next to ``patch_size`` whose window the network accepts exactly."""
        below = patch_size - 1
        while below > 0 and not self.accepts(below + 2 * self.context):
            below -= 1
        above = patch_size + 1
        while not self.accepts(above + 2 * self.context):
            above += 1
        return (below if below > 0 else None), above

    def accepts_patch(self, patch_size: int) -> bool:
        return self.accepts(patch_size + 2 * self.context)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with ``overlap``.

    The same grid as MONAI's ``sliding_window_inference``: a step of
    ``int(tile * (1 - overlap))`` (at least 1), and the last tile flush with the end.

    >>> tile_starts(10, 4, 0.25)
    [0, 3, 6]
    >>> tile_starts(4, 4, 0.5)
    [0]
    """
    if length <= tile:
        return [0]
    step = max(int(tile * (1 - overlap)), 1)
    n = next(i for i in range(length) if i * step + tile >= length) + 1
    return [min(i * step, length - tile) for i in range(n)]


def blend_weights(size: int, mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """Weights of a ``size`` x ``size`` tile when blending overlaps.

    ``"gaussian"`` down-weights tile borders (sigma = ``sigma_scale * size``), clamped below
    at 1e-3 as MONAI does, so that overlapping tiles blend smoothly; ``"constant"``
    averages them.

    >>> w = blend_weights(5)
    >>> float(w[2, 2]), bool((w == w.T).all()), float(w.min()) >= 1e-3
    (1.0, True, True)
    """
    if mode == "constant":
        return np.ones((size, size), dtype=np.float32)
    if mode != "gaussian":
        raise ValueError(f"blend mode {mode!r}; use 'gaussian' or 'constant'")
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * (sigma_scale * size) ** 2)).astype(np.float32)
    w = np.outer(g, g)
    return np.maximum(w, max(float(w.min()), 1e-3)).astype(np.float32)


def add_tile(
    acc: np.ndarray,
    wsum: np.ndarray,
    p: np.ndarray,
    weights: np.ndarray,
    at: tuple[int, int],
    origin: tuple[int, int],
    shape: tuple[int, int],
) -> None:
    """Blend one tile's probabilities into running sums: ``p`` ``(K, region, region)``,
    whose first pixel is the image's pixel ``at``, weighted by ``weights``
    (:func:`blend_weights`), added to ``acc`` ``(K, h, w)`` and its weights to ``wsum``
    ``(h, w)``, buffers whose first pixel is the image's pixel ``origin``. The tile is
    clipped to the buffers and to an image of ``shape`` (H, W); ``acc / wsum`` is the
    blend once every tile that reaches the buffers is in.

    >>> acc, wsum = np.zeros((1, 4, 4)), np.zeros((4, 4))
    >>> for at in [(0, 0), (0, 2)]:
    ...     add_tile(acc, wsum, np.full((1, 3, 3), at[1]), np.ones((3, 3)), at, (0, 0), (4, 4))
    >>> (acc / np.maximum(wsum, 1))[0, 0].tolist()  # column 2 averages both tiles
    [0.0, 0.0, 1.0, 2.0]
    """
    (r, q), (o0, o1) = at, origin
    region = weights.shape[0]
    a0, a1 = max(r, o0), min(r + region, shape[0], o0 + wsum.shape[0])
    b0, b1 = max(q, o1), min(q + region, shape[1], o1 + wsum.shape[1])
    wt = weights[a0 - r : a1 - r, b0 - q : b1 - q]
    acc[:, a0 - o0 : a1 - o0, b0 - o1 : b1 - o1] += p[:, a0 - r : a1 - r, b0 - q : b1 - q] * wt
    wsum[a0 - o0 : a1 - o0, b0 - o1 : b1 - o1] += wt
