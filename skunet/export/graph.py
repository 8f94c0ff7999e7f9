"""The exported network: a fitted segmenter's module as one ``image -> probabilities``
graph, and its ONNX and TorchScript files.

The graph does what ``predict_proba`` does for an image that fits in one tile: it
mirrors the image by the network's context and up to a size the network accepts, runs
the network (averaging the flips when the model predicts with ``tta``), crops the output
back to the input's height and width and applies the sigmoid / softmax. Inputs are
float32 ``(N, C, H, W)`` scaled as the estimator scales them (integer images divided by
their dtype's maximum, or per-image percentiles with ``normalize="percentile"``); outputs
are ``(N, K, H, W)`` class probabilities, K >= 2. Very large images are better predicted
in tiles, as ``predict_proba`` does (a BioImage Model Zoo consumer tiles with the
package's halo).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..persistence import atomic_path, refuse_existing
from ..prediction.inference import compact_probabilities, view_average
from ..tiling import Geometry

__all__ = ["ONNX_OPSET", "ProbabilityNetwork", "export_onnx", "export_torchscript", "size_rule"]

ONNX_OPSET = 17
"""The ONNX operator set of :func:`export_onnx`'s files."""


def size_rule(g: Geometry) -> tuple[int, int]:
    """``(first, step)``: the network accepts input sides ``first + k * step``, k >= 0.

    >>> from skunet.models import UNet
    >>> size_rule(Geometry(UNet(1, 1, depth=2, base_channels=4), padding=4))
    (4, 4)
    """
    accepted = [n for n in range(1, 4096) if g.accepts(n)][:8]
    steps = {b - a for a, b in pairwise(accepted)}
    if len(accepted) < 8 or len(steps) != 1:
        raise ValueError("the network's accepted input sizes are not evenly spaced")
    return accepted[0], steps.pop()


class ProbabilityNetwork(nn.Module):
    """``(N, C, H, W)`` float32 images -> ``(N, K, H, W)`` class probabilities, any H, W
    larger than ``min_side``.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network.
    context : int
        Pixels mirrored on every side before the network (the estimator's ``padding``,
        or a "valid" network's border).
    offset : int
        Where the output of the network starts, in input pixels.
    first, step : int
        The network accepts input sides ``first + k * step``.
    flips : bool or "dihedral", default=False
        Average the probabilities over the four flips, as ``tta=True`` does, or over
        the square's eight symmetries (``tta="dihedral"``).

    Examples
    --------
    >>> from skunet.models import UNet
    >>> net = UNet(1, 3, depth=2, base_channels=4)
    >>> p = ProbabilityNetwork(net, context=4, offset=4, first=4, step=4).eval()
    >>> p(torch.rand(1, 1, 13, 10)).shape
    torch.Size([1, 3, 13, 10])
    """

    def __init__(
        self,
        module: nn.Module,
        context: int,
        offset: int,
        first: int,
        step: int,
        flips: bool | str = False,
    ) -> None:
        super().__init__()
        self.module = module
        self.context, self.offset = context, offset
        self.first, self.step = first, step
        self.flips = flips

    @classmethod
    def of(cls, predictor: Any) -> ProbabilityNetwork:
        """The graph of a :class:`~skunet.predictor.Predictor` (a segmenter's
        ``predictor_``), sharing its module."""
        g = predictor.geometry
        first, step = size_rule(g)
        return cls(
            predictor.module, g.context, g.output_offset, first, step, predictor.settings.tta
        )

    @property
    def min_side(self) -> int:
        """The smallest side the graph takes: mirroring needs more pixels than it adds."""
        return self.context + self.step

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return compact_probabilities(self.module(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        c = self.context
        pad_h = (self.first - (h + 2 * c)) % self.step
        pad_w = (self.first - (w + 2 * c)) % self.step
        x = F.pad(x, (c, c + pad_w, c, c + pad_h), mode="reflect")
        p = view_average(self._probabilities, x, self.flips)
        p = p[..., self.offset : self.offset + h, self.offset : self.offset + w]
        return torch.cat([1 - p, p], dim=1) if p.shape[1] == 1 else p


@contextmanager
def cpu_graph(model: Any) -> Iterator[ProbabilityNetwork]:
    """The :class:`ProbabilityNetwork` of a fitted segmenter (or predictor) on the CPU in
    eval mode and contiguous memory; the module goes back to its device and memory format
    afterwards."""
    predictor = getattr(model, "predictor_", model)  # a segmenter, or its predictor
    graph = ProbabilityNetwork.of(predictor)
    graph.module.to(memory_format=torch.contiguous_format)
    try:
        yield graph.eval().cpu()
    finally:
        predictor.module.to(predictor.settings.device)
        if predictor.settings.channels_last:
            predictor.module.to(memory_format=torch.channels_last)


@contextmanager
def _traced(model: Any, side: int) -> Iterator[tuple[ProbabilityNetwork, torch.Tensor]]:
    """The model's CPU graph and an example input of ``side`` (at least ``min_side``) to
    trace it with; quiet about the tracer's deprecation and the shape tests it keeps as
    constants (the channel counts of this network)."""
    predictor = getattr(model, "predictor_", model)  # a segmenter, or its predictor
    with cpu_graph(predictor) as graph, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        side = max(graph.min_side, side)
        yield graph, torch.rand(1, predictor.n_channels, side, side)


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    overwrite: bool = False,
    example_size: tuple[int, int] = (64, 64),
) -> Path:
    """Write a fitted segmenter's network (or a :class:`~skunet.predictor.Predictor`'s)
    as ONNX, one file; see :meth:`skunet.UNetSegmenter.export_onnx`."""
    path = Path(path)
    refuse_existing(path, overwrite)
    with _traced(model, max(example_size)) as (graph, example), atomic_path(path) as tmp:
        # The TorchScript-based exporter records the padding arithmetic on the input's
        # size, so one graph serves every size; torch.export (dynamo=True) cannot prove
        # that the padded size divides by 2**depth for U-Nets deeper than 2.
        torch.onnx.export(
            graph,
            (example,),
            tmp,
            dynamo=False,
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={
                name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "probabilities")
            },
            opset_version=ONNX_OPSET,
        )
    return path


def export_torchscript(model: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a fitted segmenter's network (or a predictor's) as TorchScript: the same
    graph as :func:`export_onnx`, for any height and width of at least ``min_side``."""
    path = Path(path)
    refuse_existing(path, overwrite)
    with _traced(model, 64) as (graph, example), atomic_path(path) as tmp:
        torch.jit.trace(graph, example, check_trace=False).save(tmp)
    return path
