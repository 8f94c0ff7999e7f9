"""skunet: U-Net image segmentation as a scikit-learn estimator."""

from __future__ import annotations

__version__ = "0.1.0"

from . import scorers  # noqa: F401  (registers skunet's scorer names with scikit-learn)
from .estimator import UNetSegmenter

__all__ = ["UNetSegmenter", "__version__"]
