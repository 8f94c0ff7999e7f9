"""ONNX export of a fitted segmenter: any height and width, probabilities out.

The exported graph does what ``predict_proba`` does for an image that fits in one tile:
it mirrors the image by the network's context and up to a size the network accepts,
runs the network, crops the output back to the input's height and width and applies the
sigmoid / softmax. Inputs are float32 ``(N, C, H, W)`` scaled as the estimator scales
them (integer images divided by their dtype's maximum, or per-image percentiles with
``normalize="percentile"``); outputs are ``(N, K, H, W)`` class probabilities, K >= 2.
Very large images are better predicted in tiles, as ``predict_proba`` does.
"""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .inference import compact_probabilities
from .persistence import atomic_path
from .tiling import Geometry

__all__ = ["export_onnx"]


def _size_rule(g: Geometry) -> tuple[int, int]:
    """``(first, step)``: the network accepts input sides ``first + k * step``, k >= 0."""
    accepted = [n for n in range(1, 4096) if g.accepts(n)][:8]
    steps = {b - a for a, b in pairwise(accepted)}
    if len(accepted) < 8 or len(steps) != 1:
        raise ValueError("the network's accepted input sizes are not evenly spaced")
    return accepted[0], steps.pop()


class _Probabilities(nn.Module):
    def __init__(self, module: nn.Module, geometry: Geometry) -> None:
        super().__init__()
        self.module = module
        self.context = geometry.context
        self.offset = geometry.output_offset
        self.first, self.step = _size_rule(geometry)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        c = self.context
        pad_h = (self.first - (h + 2 * c)) % self.step
        pad_w = (self.first - (w + 2 * c)) % self.step
        x = F.pad(x, (c, c + pad_w, c, c + pad_h), mode="reflect")
        logits = self.module(x)[..., self.offset : self.offset + h, self.offset : self.offset + w]
        p = compact_probabilities(logits)
        return torch.cat([1 - p, p], dim=1) if p.shape[1] == 1 else p


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    overwrite: bool = False,
    example_size: tuple[int, int] = (64, 64),
) -> Path:
    """Write a fitted segmenter's network (or a :class:`~skunet.predictor.Predictor`'s)
    as ONNX; see :meth:`skunet.UNetSegmenter.export_onnx`."""
    predictor = getattr(model, "predictor_", model)  # a segmenter, or its predictor
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    module = predictor.module.to(memory_format=torch.contiguous_format)
    wrapper = _Probabilities(module, predictor.geometry).eval().cpu()
    example = torch.rand(1, predictor.n_channels, *example_size)
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=1, max=16384),
        3: torch.export.Dim("width", min=1, max=16384),
    }
    try:
        with torch.no_grad(), atomic_path(path) as tmp:
            torch.onnx.export(
                wrapper,
                (example,),
                tmp,
                dynamo=True,
                dynamic_shapes={"x": dims},
                input_names=["image"],
                output_names=["probabilities"],
                verbose=False,
            )
    finally:
        module.to(predictor.settings.device)
        if predictor.settings.channels_last:
            module.to(memory_format=torch.channels_last)
    return path
