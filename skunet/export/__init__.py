"""Exports of a fitted segmenter for tools outside Python sessions.

- :func:`export_onnx` / :func:`export_torchscript`: the network as one
  ``image -> probabilities`` graph (:class:`~skunet.probability_network.ProbabilityNetwork`).
- :func:`to_bioimageio` / :func:`from_bioimageio`: a BioImage Model Zoo package (format
  0.5) that napari, Fiji (deepImageJ), ilastik and QuPath run, and back into a fitted
  segmenter (needs the ``export`` extra).
"""

from ..probability_network import ProbabilityNetwork, export_onnx, export_torchscript
from .zoo import from_bioimageio, to_bioimageio

__all__ = [
    "ProbabilityNetwork",
    "export_onnx",
    "export_torchscript",
    "from_bioimageio",
    "to_bioimageio",
]
