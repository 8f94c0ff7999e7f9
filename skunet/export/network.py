"""The exported graph's code lives in :mod:`skunet.probability_network`, below the
estimator (whose ``export_onnx`` uses it) and this sub-package (which builds segmenters),
so that neither imports the other in a circle; these names stay importable from here."""

from ..probability_network import (
    ONNX_OPSET,
    ProbabilityNetwork,
    export_onnx,
    export_torchscript,
    size_rule,
)

__all__ = ["ONNX_OPSET", "ProbabilityNetwork", "export_onnx", "export_torchscript", "size_rule"]
