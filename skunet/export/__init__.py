"""Exports of a fitted segmenter for tools outside Python sessions, every writer here.

- :func:`export_onnx` / :func:`export_torchscript` (:mod:`skunet.export.graph`): the
  network as one ``image -> probabilities`` graph (:class:`ProbabilityNetwork`).
- :func:`to_bioimageio` / :func:`from_bioimageio` (:mod:`skunet.export.zoo`): a BioImage
  Model Zoo package (format 0.5) that napari, Fiji (deepImageJ), ilastik and QuPath run,
  and back into a fitted segmenter (needs the ``export`` extra).
- :data:`FORMATS` (:mod:`skunet.export.formats`): the writers by name, which ``skunet
  export --format`` offers; :func:`export` writes any of them.
"""

from .formats import FORMATS, ExportFormat, export
from .graph import ProbabilityNetwork, export_onnx, export_torchscript
from .zoo import from_bioimageio, to_bioimageio

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ProbabilityNetwork",
    "export",
    "export_onnx",
    "export_torchscript",
    "from_bioimageio",
    "to_bioimageio",
]
