"""Prediction: images -> windows or overlapping tiles -> network -> blended probabilities.

Images up to one tile are mirrored to the size the network needs and run whole, batched
with images of the same size. Larger images are cut into overlapping tiles on MONAI's
grid, run in batches, and blended with Gaussian (or constant) weights into one
probability map, so memory grows with the tile batch and the output, not with the
network's activations over the whole image.

Probabilities are kept *compact*: one foreground channel for one-logit (binary) models,
K channels otherwise; :func:`expand` gives the (K, H, W) form.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..constraints import Interval, Options, check_params
from ..intake.validation import as_float32
from ..mixed_precision import autocast_context
from ..progress import tqdm
from ..tiling import Geometry, add_tile, blend_weights, tile_starts, window

__all__ = [
    "FLIPS",
    "InferenceSettings",
    "classes",
    "compact_probabilities",
    "expand",
    "logit_classes",
    "predict_compact",
    "symmetries",
    "tile_input_size",
    "view_average",
]

FLIPS = ((), (-1,), (-2,), (-2, -1))
"""The flips whose probabilities ``tta`` averages (dims of a ``(N, C, H, W)`` batch)."""


def symmetries(tta: bool | str) -> list[tuple[tuple[int, ...], bool]]:
    """``(flip dims, transpose)`` of each view ``tta`` averages: the image alone
    (False), its 4 flips (True), or the square's 8 symmetries, the flips of the image
    and of its transpose (``"dihedral"``)."""
    if not tta:
        return [((), False)]
    views = [(dims, False) for dims in FLIPS]
    return views + [(dims, True) for dims in FLIPS] if tta == "dihedral" else views


def view_average(probabilities, x: torch.Tensor, tta: bool | str) -> torch.Tensor:
    """``probabilities(view)`` of each view of ``x`` that ``tta`` names, mapped back to
    ``x``'s orientation and averaged."""
    total, views = None, symmetries(tta)
    for dims, transpose in views:
        xi = torch.flip(x, dims) if dims else x
        p = probabilities(xi.transpose(-2, -1) if transpose else xi)
        p = p.transpose(-2, -1) if transpose else p
        p = torch.flip(p, dims) if dims else p
        total = p if total is None else total + p
    return total / len(views)


@dataclass
class InferenceSettings:
    """How to run the network at prediction time (see :class:`skunet.UNetSegmenter`)."""

    device: str | torch.device = "cpu"
    tile_size: int | None = None
    tile_overlap: float = 0.1
    blend: str = "gaussian"
    tta: bool | str = False
    channels_last: bool = False
    autocast: bool | str = False
    pixels_per_batch: int = 8 * 288 * 288
    progress: bool = False

    # what the settings a user passes may be; the estimator's own table includes it
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "tile_size": [Interval(int, 1), None],
        "tile_overlap": [Interval(float, 0, 1, "left")],
        "blend": [Options(("gaussian", "constant"))],
        "tta": ["boolean", Options(("dihedral",))],
        "channels_last": ["boolean", None],
        "autocast": ["boolean", Options(("auto", "bfloat16", "float16"))],
    }

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        check_params(values, self._parameter_constraints)

    def autocast_context(self):
        return autocast_context(self.device, self.autocast)


def compact_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities of a batch of logits ``(N, K', H, W)``: the sigmoid of one logit
    (the foreground of a binary model), the softmax of K."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def logit_classes(logits: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Class indices ``(N, H, W)`` of a batch of logits, and the number of classes:
    ``logit > 0`` for one logit (two classes), else the argmax; the same classes as
    :func:`classes` of their probabilities."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long(), 2
    return logits.argmax(1), logits.shape[1]


def forward(module: nn.Module, xb: np.ndarray, s: InferenceSettings) -> torch.Tensor:
    """Compact probabilities of a batch of windows, averaged over the views of ``tta``."""
    x = torch.from_numpy(xb).to(s.device)
    if s.channels_last:  # once: flips keep the format, only a transposed view is copied
        x = x.contiguous(memory_format=torch.channels_last)

    def probabilities(view: torch.Tensor) -> torch.Tensor:
        if s.channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        with s.autocast_context():
            return compact_probabilities(module(view).float())

    return view_average(probabilities, x, s.tta)


def tile_input_size(
    g: Geometry, s: InferenceSettings, default: int, shape: tuple[int, int] | None = None
) -> int:
    """Input side of a prediction tile: ``s.tile_size`` made one the network accepts
    with its context; with ``s.tile_size`` None, for an image of ``shape`` (H, W), the
    tile that covers the image on the overlapping grid (:func:`~skunet.tiling.tile_starts`)
    with the fewest input pixels run in all, of at most ``default`` pixels a side for an
    image of up to two such tiles a side and half that for a larger one (the largest,
    ``default``, when ``shape`` is None or fits in it).

    The fixed largest tile wastes up to a whole tile per row and column: a 2048-pixel
    side in 1600-pixel regions at overlap 0.1 takes 2 tiles (3264 input pixels), in
    1088-pixel regions also 2 (2240). On a larger image the tile's size hardly changes
    the pixels run in memory (the overlap and the context set them), but block-wise
    prediction (:mod:`skunet.prediction.blocks`) runs a tile once for each block it reaches, so
    smaller tiles waste less there; the tile depends on the image's shape alone, so
    block-wise results equal the in-memory ones at any chunking.

    >>> from skunet.models import UNet
    >>> g = Geometry(UNet(depth=4), padding=16)
    >>> s = InferenceSettings()
    >>> tile_input_size(g, s, 1632), tile_input_size(g, s, 1632, (2048, 2048))
    (1632, 1120)
    >>> tile_input_size(g, s, 1632, (8192, 8192))
    736
    """
    wanted = s.tile_size if s.tile_size is not None else default
    largest = g.input_length(max(wanted - 2 * g.context, 1))
    region = largest - 2 * g.context
    if s.tile_size is not None or shape is None or max(shape) <= region:
        return largest
    if max(shape) > 2 * region:  # a slide: tiles of half the side
        largest = g.input_length(max(wanted // 2 - 2 * g.context, 1))
        region = largest - 2 * g.context
    best, cost = largest, None
    for covered in range(region, region // 2, -g.divisor):
        tile = g.input_length(covered)  # never above largest: covered <= region
        inner = tile - 2 * g.context
        n = len(tile_starts(shape[0], inner, s.tile_overlap))
        n *= len(tile_starts(shape[1], inner, s.tile_overlap))
        if cost is None or n * tile**2 < cost:
            best, cost = tile, n * tile**2
    return best


def _windows(cuts, height: int, width: int) -> np.ndarray:
    """A float32 batch of ``height`` x ``width`` windows, one per ``(image, top, left)``."""
    return np.stack([as_float32(window(im, top, left, height, width)) for im, top, left in cuts])


def tile_batches(
    module: nn.Module,
    tiles: Sequence,
    read: Callable[[Any], np.ndarray],
    tile: int,
    g: Geometry,
    s: InferenceSettings,
) -> Iterator[tuple[Sequence, np.ndarray]]:
    """Run ``tiles`` through the network in batches of about ``s.pixels_per_batch``
    input pixels; yields each batch and the compact probabilities of its tiles' output
    regions ``(n, K', tile - 2 context, tile - 2 context)``. ``read(t)`` is tile ``t``'s
    input window ``(C, tile, tile)``."""
    region, off = tile - 2 * g.context, g.output_offset
    per_batch = tiles_per_batch(tile, s)
    for b in range(0, len(tiles), per_batch):
        batch = tiles[b : b + per_batch]
        xb = np.stack([as_float32(read(t)) for t in batch])
        probs = forward(module, xb, s)[..., off : off + region, off : off + region]
        yield batch, probs.cpu().numpy()


def tiles_per_batch(tile: int, s: InferenceSettings) -> int:
    """How many ``tile`` x ``tile`` windows one batch holds (``s.pixels_per_batch``)."""
    return max(1, s.pixels_per_batch // (tile * tile))


def _whole(module, images, idx, g, s, bar, finalize) -> Iterator[tuple[int, np.ndarray]]:
    c, off = g.context, g.output_offset
    h, w = images[idx[0]].shape[1:]
    lh, lw = g.input_length(h), g.input_length(w)
    per_batch = max(1, s.pixels_per_batch // (lh * lw))
    for start in range(0, len(idx), per_batch):
        chunk = idx[start : start + per_batch]
        p = forward(module, _windows(((images[i], -c, -c) for i in chunk), lh, lw), s)
        p = p[..., off : off + h, off : off + w].cpu().numpy()
        bar.update(len(chunk))
        for i, pi in zip(chunk, p):
            yield i, finalize(pi)


def _tiled(module, image, tile, g, s, bar, finalize) -> np.ndarray:
    """Blend overlapping tiles, streaming: only one band of tile rows is kept in float.

    Tiles run in batches in row-major order. Image rows above the first unfinished tile
    row are final: they are normalised, passed through ``finalize`` (e.g. to uint8
    classes) and stored, so the float buffers hold about one tile's rows, not the image.
    """
    c = g.context
    region = tile - 2 * c
    h, w = image.shape[1:]
    weights = blend_weights(region, s.blend)
    rows = tile_starts(h, region, s.tile_overlap)
    cols = tile_starts(w, region, s.tile_overlap)
    per_batch = tiles_per_batch(tile, s)
    # the buffers hold the rows that the tiles of one batch can reach
    step = max((b - a for a, b in pairwise(rows)), default=0)
    band = min(region + step * (per_batch // len(cols) + 1), h)
    acc = wsum = out = None
    lo = 0  # image row of the buffers' first row

    def flush(upto: int) -> None:
        nonlocal out, lo
        n = upto - lo
        done = finalize(acc[:, :n] / wsum[:n])
        if out is None:
            out = np.empty((*done.shape[:-2], h, w), dtype=done.dtype)
        out[..., lo:upto, :] = done
        if upto == h:  # the last rows: nothing to keep
            return
        acc[:, : band - n] = acc[:, n:].copy()
        acc[:, band - n :] = 0
        wsum[: band - n] = wsum[n:].copy()
        wsum[band - n :] = 0
        lo = upto

    tiles = [(i, r, q) for i, r in enumerate(rows) for q in cols]

    def read(t: tuple[int, int, int]) -> np.ndarray:
        return window(image, t[1] - c, t[2] - c, tile, tile)

    for batch, probs in tile_batches(module, tiles, read, tile, g, s):
        if acc is None:
            acc = np.zeros((probs.shape[1], band, w), dtype=np.float32)
            wsum = np.zeros((band, w), dtype=np.float32)
        for (_, r, q), p in zip(batch, probs):
            add_tile(acc, wsum, p, weights, (r, q), (lo, 0), (h, w))
        bar.update(len(batch))
        # image rows above the first unfinished tile row are final
        last, _, q_last = batch[-1]
        unfinished = last + 1 if q_last == cols[-1] else last
        upto = rows[unfinished] if unfinished < len(rows) else h
        if upto > lo:
            flush(upto)
    return out


def predict_compact(
    module: nn.Module,
    images: Sequence[np.ndarray],
    geometry: Geometry,
    settings: InferenceSettings,
    default_tile: int,
    finalize: Callable[[np.ndarray], np.ndarray] = lambda p: p,
) -> list[np.ndarray]:
    """Predict ``(C, H, W)`` images of any dtype (validated: the unchecked core).

    Returns ``finalize(p)`` of each image's compact probabilities ``p``; ``finalize``
    must work on any band of rows (it receives ``(K', rows, W)``), e.g. :func:`classes`.
    """
    g = geometry
    region = tile_input_size(g, settings, default_tile) - 2 * g.context
    whole: dict[tuple[int, int], list[int]] = defaultdict(list)
    tiled = []
    for i, im in enumerate(images):
        if im.shape[1] <= region and im.shape[2] <= region:
            whole[im.shape[1:]].append(i)
        else:
            tiled.append(i)
    tiles = {i: tile_input_size(g, settings, default_tile, images[i].shape[1:]) for i in tiled}
    n_tiles = sum(
        len(tile_starts(images[i].shape[1], tiles[i] - 2 * g.context, settings.tile_overlap))
        * len(tile_starts(images[i].shape[2], tiles[i] - 2 * g.context, settings.tile_overlap))
        for i in tiled
    )
    total = sum(len(v) for v in whole.values()) + n_tiles
    out: list[np.ndarray | None] = [None] * len(images)
    module.eval()
    with (
        torch.inference_mode(),
        tqdm(
            total=total,
            desc="predict",
            unit="window",
            leave=False,
            disable=not settings.progress or total < 16,
        ) as bar,
    ):
        for idx in whole.values():
            for i, p in _whole(module, images, idx, g, settings, bar, finalize):
                out[i] = p
        for i in tiled:
            out[i] = _tiled(module, images[i], tiles[i], g, settings, bar, finalize)
    return out


def expand(p: np.ndarray) -> np.ndarray:
    """(K, H, W) probabilities from compact ones (background added for binary models)."""
    if p.shape[0] == 1:
        return np.concatenate([1 - p, p])
    return p


def classes(p: np.ndarray) -> np.ndarray:
    """uint8 class mask from compact probabilities (foreground above 0.5 for binary)."""
    if p.shape[0] == 1:
        return (p[0] > 0.5).view(np.uint8)
    return p.argmax(0).astype(np.uint8)
