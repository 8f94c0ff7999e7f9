"""skunet: U-Net image segmentation as a scikit-learn estimator."""

from __future__ import annotations

from .estimator import UNetSegmenter
from .scorers import get_scorer
from .version import __version__

__all__ = ["UNetSegmenter", "__version__", "get_scorer"]
