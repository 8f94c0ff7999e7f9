"""The export formats, one registered writer each: :data:`FORMATS` feeds ``skunet
export --format`` (its choices, help and options) and :func:`export`.

A writer is ``write(seg, path, overwrite=False, **options) -> Path``; a format names the
options it takes (``skunet export``'s ``--name``, ``--author`` ...), so adding a format is
one :class:`ExportFormat` in :data:`FORMATS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..intake.validation import lookup
from .graph import export_onnx, export_torchscript
from .zoo import to_bioimageio

__all__ = ["FORMATS", "ExportFormat", "export"]


@dataclass(frozen=True)
class ExportFormat:
    """One way to write a fitted segmenter for tools outside Python sessions.

    Attributes
    ----------
    name : str
    suffix : str
        The file suffix the format writes (``.zip``, ``.onnx``, ``.pt``).
    summary : str
        One line for help texts.
    write : callable
        ``write(seg, path, overwrite=False, **options) -> Path``.
    options : tuple of str
        The keyword options ``write`` takes beyond ``overwrite``.
    """

    name: str
    suffix: str
    summary: str
    write: Callable[..., Path]
    options: tuple[str, ...] = ()


FORMATS: dict[str, ExportFormat] = {
    "bioimageio": ExportFormat(
        name="bioimageio",
        suffix=".zip",
        summary="a BioImage Model Zoo package (format 0.5 zip: state dict, TorchScript and "
        "ONNX weights, each checked with bioimageio.core's test_model) that napari, Fiji "
        "(deepImageJ), ilastik and QuPath run",
        write=to_bioimageio,
        options=tuple(
            "name description authors licence version tags cite test_image input_dtype "
            "weight_formats test".split()
        ),
    ),
    "onnx": ExportFormat(
        name="onnx",
        suffix=".onnx",
        summary="the network as one ONNX graph (image -> probabilities, any size)",
        write=export_onnx,
    ),
    "torchscript": ExportFormat(
        name="torchscript",
        suffix=".pt",
        summary="the same graph as TorchScript (torch.jit.load, no skunet needed)",
        write=export_torchscript,
    ),
}
"""The export formats by name (see :class:`ExportFormat`)."""


def export(
    seg: Any, path: str | os.PathLike, format: str = "bioimageio", overwrite: bool = False,
    **options: Any,
) -> Path:  # fmt: skip
    """Write the fitted ``seg`` to ``path`` in the registered ``format``.

    Raises
    ------
    ValueError
        An unknown format, or an option the format does not take (named).
    """
    spec = lookup(FORMATS, format, "export format")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"the {format} format takes no option {unknown[0]!r}; it takes "
            f"{list(spec.options) or 'none'}"
        )
    return spec.write(seg, path, overwrite=overwrite, **options)
